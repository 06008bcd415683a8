// palitra — fuzz target: core/timer/timer_heap against a std::multimap model.
//
// The heap orders timers by (deadline, seq), seq being the arming order, so
// equal deadlines fire FIFO. std::multimap keeps equal keys in insertion
// order, which is exactly that rule, so the model is a multimap from
// deadline to node index, plus each armed node's iterator (for erase).
//
// Op encoding (one op byte, then its arguments; the input ends the program):
//   op % 6 == 0  push(i, d)       i = byte % 32, d = byte % 8 (many ties)
//   op % 6 == 1  push(i, d)       i = byte % 32, d = u16 (spread out)
//   op % 6 == 2  erase(i)         i = byte % 32, armed or not (no-op then)
//   op % 6 == 3  pop()            also on an empty heap (returns nullptr)
//   op % 6 == 4  pop_due(d)       pop every timer with deadline <= d = u16,
//                                 as the loop's fire_timers() does
//   op % 6 == 5  re-arm(i, d)     erase(i) then push(i, d = byte % 8)
// A push of a node that is already armed (a precondition violation) is
// turned into erase + push. After every op: size(), empty(), top(), valid(),
// and every node's armed()/heap_index agree with the model.
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>

#include "fuzz_support.hpp"
#include "timer/timer_heap.hpp"

namespace {

using palitra::detail::timer_heap;
using palitra::detail::timer_node;
using palitra_fuzz::reader;
using time_point = std::chrono::steady_clock::time_point;

constexpr std::size_t node_count = 32;
constexpr std::size_t max_ops = 4096;

struct harness {
  timer_heap heap;
  std::array<timer_node, node_count> nodes{};
  std::multimap<std::int64_t, std::size_t> model; // deadline (ns) -> node index
  std::array<std::multimap<std::int64_t, std::size_t>::iterator, node_count> where{};
  std::array<bool, node_count> armed{};

  static time_point at(std::int64_t ns) { return time_point(std::chrono::nanoseconds(ns)); }

  void push(std::size_t i, std::int64_t d) {
    if (armed[i]) erase(i); // push requires a disarmed node
    nodes[i].deadline = at(d);
    heap.push(nodes[i]);
    where[i] = model.emplace(d, i); // multimap: after every equal key (FIFO)
    armed[i] = true;
  }

  void erase(std::size_t i) {
    heap.erase(nodes[i]);
    if (armed[i]) {
      model.erase(where[i]);
      armed[i] = false;
    }
  }

  void pop() {
    timer_node* t = heap.pop();
    if (model.empty()) {
      FUZZ_CHECK(t == nullptr, "pop() on an empty heap returned a node");
      return;
    }
    const std::size_t want = model.begin()->second;
    FUZZ_CHECK(t == &nodes[want], "pop() did not return the earliest (deadline, seq) timer");
    FUZZ_CHECK(!t->armed(), "a popped timer still reports armed()");
    model.erase(model.begin());
    armed[want] = false;
  }

  void pop_due(std::int64_t d) {
    while (timer_node* t = heap.top()) {
      if (t->deadline > at(d)) break;
      pop();
    }
    FUZZ_CHECK(model.empty() || model.begin()->first > d, "pop_due left a due timer behind");
  }

  void check() const {
    FUZZ_CHECK(heap.valid(), "heap property or a node's heap_index is broken");
    FUZZ_CHECK(heap.size() == model.size(), "size() differs from the model");
    FUZZ_CHECK(heap.empty() == model.empty(), "empty() differs from the model");
    if (model.empty()) {
      FUZZ_CHECK(heap.top() == nullptr, "top() of an empty heap is not nullptr");
    } else {
      FUZZ_CHECK(heap.top() == &nodes[model.begin()->second],
                 "top() is not the earliest timer (FIFO among equal deadlines)");
    }
    std::uint64_t prev_seq = 0;
    std::int64_t prev_deadline = -1;
    for (const auto& [d, i] : model) {
      // Equal deadlines: the model's order is arming order, so seq must grow.
      if (d == prev_deadline)
        FUZZ_CHECK(nodes[i].seq > prev_seq, "seq does not follow arming order");
      prev_deadline = d;
      prev_seq = nodes[i].seq;
    }
    for (std::size_t i = 0; i < node_count; ++i) {
      FUZZ_CHECK(nodes[i].armed() == armed[i], "a node's armed() differs from the model");
      if (armed[i])
        FUZZ_CHECK(nodes[i].heap_index < heap.size(), "an armed node's heap_index is out of range");
    }
  }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  reader in(data, size);
  harness h;
  for (std::size_t n = 0; n < max_ops && !in.done(); ++n) {
    switch (in.below(6)) {
    case 0: {
      const std::size_t i = in.below(node_count);
      h.push(i, in.below(8));
      break;
    }
    case 1: {
      const std::size_t i = in.below(node_count);
      h.push(i, in.u16());
      break;
    }
    case 2: h.erase(in.below(node_count)); break;
    case 3: h.pop(); break;
    case 4: h.pop_due(in.u16()); break;
    case 5: {
      const std::size_t i = in.below(node_count);
      h.erase(i);
      h.push(i, in.below(8));
      break;
    }
    }
    h.check();
  }
  // Disarm everything through the heap: the last state must drain in order.
  while (!h.model.empty()) {
    h.pop();
    h.check();
  }
  FUZZ_CHECK(h.heap.pop() == nullptr, "a drained heap still pops a node");
  return 0;
}
