// palitra — fuzz target: core/runtime/mpsc_queue against a std::deque model.
//
// The first byte picks the mode:
//   even  single-threaded op program, compared with std::deque after every op
//   odd   two producer threads plus the consumer (which also pushes, as the
//         loop thread does when a coroutine posts): push counts and burst
//         patterns come from the input; checked for per-producer FIFO, no
//         loss, no duplicate, exact totals.
//
// Single-threaded op encoding (op byte, then arguments):
//   op % 4 == 0  push(i)        i = byte % 64; a queued node is not pushed
//                               twice (precondition): the next free one is
//   op % 4 == 1  push_many(k)   k = byte % 16 free nodes, lowest index first
//   op % 4 == 2  take_all()     the chain must be the model's order (FIFO)
//   op % 4 == 3  check-only     empty_hint()/empty_seq_cst() vs the model
// After every op: emptiness agrees with the model. At the end: one take_all
// returns exactly the model's contents.
//
// Two-producer encoding (after the mode byte):
//   u16 % 1024 pushes for producer 0, u16 % 1024 for producer 1, byte % 256
//   pushes for the consumer; then burst bytes: producer p takes its burst
//   lengths from bytes p, p+3, p+6, ... (cycling), yielding between bursts;
//   the consumer takes its pause pattern from the bytes at 2, 5, 8, ...
#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <thread>
#include <vector>

#include "fuzz_support.hpp"
#include "runtime/mpsc_queue.hpp"

namespace {

using palitra::detail::mpsc_queue;
using palitra::detail::queue_node;
using palitra_fuzz::reader;

struct item : queue_node {
  std::uint32_t producer = 0;
  std::uint32_t seq = 0;
  bool queued = false; // single-threaded mode only
};

// ---- single-threaded differential program -----------------------------------

constexpr std::size_t pool_size = 64;
constexpr std::size_t max_ops = 4096;

struct single_harness {
  mpsc_queue q;
  std::array<item, pool_size> pool{};
  std::deque<std::size_t> model;

  bool push_free_from(std::size_t i) {
    for (std::size_t k = 0; k < pool_size; ++k) {
      const std::size_t j = (i + k) % pool_size;
      if (!pool[j].queued) {
        pool[j].queued = true;
        q.push(&pool[j]);
        model.push_back(j);
        return true;
      }
    }
    return false; // every node is queued
  }

  void take_all() {
    queue_node* n = q.take_all();
    std::size_t taken = 0;
    while (n != nullptr) {
      FUZZ_CHECK(taken < model.size(), "take_all returned more nodes than were pushed");
      FUZZ_CHECK(n == &pool[model[taken]], "take_all order is not push order (FIFO)");
      queue_node* next = n->next; // read before the node may be reused
      static_cast<item*>(n)->queued = false;
      n = next;
      ++taken;
    }
    FUZZ_CHECK(taken == model.size(), "take_all lost nodes");
    model.clear();
  }

  void check() const {
    FUZZ_CHECK(q.empty_hint() == model.empty(), "empty_hint() differs from the model");
    FUZZ_CHECK(q.empty_seq_cst() == model.empty(), "empty_seq_cst() differs from the model");
  }
};

void run_single(reader& in) {
  single_harness h;
  for (std::size_t n = 0; n < max_ops && !in.done(); ++n) {
    switch (in.below(4)) {
    case 0: h.push_free_from(in.below(pool_size)); break;
    case 1: {
      const unsigned k = in.below(16);
      for (unsigned j = 0; j < k; ++j) h.push_free_from(0);
      break;
    }
    case 2: h.take_all(); break;
    case 3: break;
    }
    h.check();
  }
  h.take_all();
  h.check();
  FUZZ_CHECK(h.q.take_all() == nullptr, "a drained queue still returns nodes");
}

// ---- two producers + the consumer -------------------------------------------

constexpr std::uint32_t producers = 3; // 0, 1: threads; 2: the consumer itself

void run_threads(reader& in) {
  std::array<std::uint32_t, producers> count{};
  count[0] = in.u16() % 1024;
  count[1] = in.u16() % 1024;
  count[2] = in.u8();
  std::vector<std::uint8_t> pattern;
  while (!in.done() && pattern.size() < 96) pattern.push_back(in.u8());
  if (pattern.empty()) pattern.push_back(1);
  auto burst_of = [&](std::uint32_t p, std::size_t k) -> std::uint32_t {
    const std::size_t idx = (p + 3 * k) % pattern.size();
    return 1u + pattern[idx] % 64u;
  };

  std::array<std::vector<item>, producers> items;
  for (std::uint32_t p = 0; p < producers; ++p) {
    items[p].resize(count[p]);
    for (std::uint32_t s = 0; s < count[p]; ++s) {
      items[p][s].producer = p;
      items[p][s].seq = s;
    }
  }

  mpsc_queue q;
  std::atomic<bool> go{false};
  std::atomic<int> finished{0};
  auto produce = [&](std::uint32_t p) {
    // acquire: pairs with the release store below; only a start barrier.
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    std::uint32_t s = 0;
    for (std::size_t k = 0; s < count[p]; ++k) {
      const std::uint32_t end = std::min(count[p], s + burst_of(p, k));
      for (; s < end; ++s) q.push(&items[p][s]);
      std::this_thread::yield();
    }
    // release: every push above happens before the consumer's final drain.
    finished.fetch_add(1, std::memory_order_release);
  };
  std::thread t0(produce, 0u), t1(produce, 1u);
  go.store(true, std::memory_order_release);

  const std::uint64_t total = std::uint64_t(count[0]) + count[1] + count[2];
  std::array<std::uint32_t, producers> next{}; // next seq expected per producer
  std::array<std::vector<bool>, producers> seen;
  for (std::uint32_t p = 0; p < producers; ++p) seen[p].assign(count[p], false);
  std::uint64_t received = 0;
  std::uint32_t own = 0; // the consumer's own pushes so far
  auto drain = [&] {
    for (queue_node* n = q.take_all(); n != nullptr;) {
      auto* it = static_cast<item*>(n);
      queue_node* nx = n->next;
      FUZZ_CHECK(it->producer < producers, "a foreign node came out of the queue");
      FUZZ_CHECK(it->seq < count[it->producer], "a node with an impossible seq");
      FUZZ_CHECK(!seen[it->producer][it->seq], "a node was delivered twice");
      seen[it->producer][it->seq] = true;
      FUZZ_CHECK(it->seq == next[it->producer], "per-producer FIFO broken (or a node lost)");
      ++next[it->producer];
      ++received;
      n = nx;
    }
  };
  // Ends when everything arrived, or when every producer is done and one
  // more drain did not bring the rest: a lost node is a failure, not a hang.
  for (std::size_t k = 0; received < total; ++k) {
    // acquire: pairs with the producers' release increments.
    if (finished.load(std::memory_order_acquire) == 2 && own == count[2]) {
      drain();
      break;
    }
    const std::uint32_t b = burst_of(2, k);
    for (std::uint32_t j = 0; j < b % 4 && own < count[2]; ++j) q.push(&items[2][own++]);
    const std::uint64_t before = received;
    drain();
    // Nothing arrived: give the CPU to the producers (2 cores, 3 threads).
    if (received == before) std::this_thread::yield();
    if (own < count[2] && b % 4 == 0) q.push(&items[2][own++]);
  }
  t0.join();
  t1.join();
  drain();
  FUZZ_CHECK(received == total, "the queue lost nodes (totals differ)");
  for (std::uint32_t p = 0; p < producers; ++p)
    FUZZ_CHECK(next[p] == count[p], "a producer's nodes did not all arrive");
  FUZZ_CHECK(q.empty_seq_cst(), "the queue is not empty after every node was taken");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  reader in(data, size);
  if (in.u8() % 2 == 0)
    run_single(in);
  else
    run_threads(in);
  return 0;
}
