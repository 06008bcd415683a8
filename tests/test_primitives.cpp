// White-box tests of the core primitives: the timer heap against a reference
// model, the completion slot and the address-wait backends (both of them),
// and the MPSC submission queue. These include core/ headers directly.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "support.hpp"

#include "wait/address_wait.hpp"
#include "runtime/mpsc_queue.hpp"
#include "timer/timer_heap.hpp"

#include "wait/completion_slot.hpp"

using namespace std::chrono_literals;
using palitra::detail::completion_slot;
using palitra::detail::wait_backend;
using palitra_test::watchdog;
using steady = std::chrono::steady_clock;

namespace {

/// The seed of a randomized test: PALITRA_TEST_SEED replays one, otherwise
/// a fresh one. Printed first, so a failure can be replayed (G7).
std::uint64_t test_seed(const char* what) {
  std::uint64_t seed;
  if (const char* e = std::getenv("PALITRA_TEST_SEED"))
    seed = std::strtoull(e, nullptr, 0);
  else
    seed = (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  std::printf("%s: seed %llu (replay with PALITRA_TEST_SEED=%llu)\n", what,
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  return seed;
}

/// Selects an address-wait backend for the scope and restores the previous
/// one (the switch is process-wide; set only while nothing waits).
struct backend_scope {
  explicit backend_scope(wait_backend b) : old_(palitra::detail::get_wait_backend()) {
    palitra::detail::set_wait_backend(b);
  }
  ~backend_scope() { palitra::detail::set_wait_backend(old_); }
  backend_scope(const backend_scope&) = delete;
  backend_scope& operator=(const backend_scope&) = delete;

private:
  wait_backend old_;
};

const char* name_of(wait_backend b) { return b == wait_backend::native ? "native" : "portable"; }

} // namespace

// ---- timer_heap --------------------------------------------------------------

TEST_CASE("timer_heap matches a multimap model under random push/erase/pop", "[primitives][timer]") {
  using palitra::detail::timer_heap;
  using palitra::detail::timer_node;
  const std::uint64_t seed = test_seed("timer_heap model");
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);

  for (int round = 0; round < 20; ++round) {
    constexpr std::size_t pool = 64;
    std::vector<timer_node> nodes(pool);
    timer_heap heap;
    // A multimap keeps equal keys in insertion order: exactly the FIFO among
    // equal deadlines the heap promises.
    std::multimap<steady::time_point, timer_node*> model;
    const auto base = steady::time_point{} + std::chrono::hours(1);
    // Few distinct deadlines, so ties are the common case.
    const int spread = round % 2 == 0 ? 4 : 1000;

    auto model_erase = [&](timer_node* t) {
      auto [lo, hi] = model.equal_range(t->deadline);
      for (auto it = lo; it != hi; ++it)
        if (it->second == t) {
          model.erase(it);
          return true;
        }
      return false;
    };

    for (int step = 0; step < 2000; ++step) {
      INFO("round " << round << " step " << step);
      timer_node& n = nodes[rng() % pool];
      switch (rng() % 7) {
      case 0: case 1: case 2: // push (an armed node is erased first: push requires unarmed)
        if (n.armed()) {
          heap.erase(n);
          REQUIRE(model_erase(&n));
        }
        n.deadline = base + std::chrono::milliseconds(rng() % spread);
        heap.push(n);
        REQUIRE(n.armed());
        model.emplace(n.deadline, &n);
        break;
      case 3: case 4: { // erase (of an unarmed node: a no-op)
        const bool was = n.armed();
        heap.erase(n);
        REQUIRE_FALSE(n.armed());
        REQUIRE(model_erase(&n) == was);
        break;
      }
      default: { // pop
        timer_node* t = heap.pop();
        if (model.empty()) {
          REQUIRE(t == nullptr);
        } else {
          REQUIRE(t == model.begin()->second);
          REQUIRE_FALSE(t->armed());
          model.erase(model.begin());
        }
        break;
      }
      }
      REQUIRE(heap.valid());
      REQUIRE(heap.size() == model.size());
      REQUIRE(heap.empty() == model.empty());
      REQUIRE(heap.top() == (model.empty() ? nullptr : model.begin()->second));
    }
    // Drain: everything comes out in model order.
    while (!model.empty()) {
      REQUIRE(heap.pop() == model.begin()->second);
      model.erase(model.begin());
      REQUIRE(heap.valid());
    }
    REQUIRE(heap.empty());
    REQUIRE(heap.pop() == nullptr);
  }
}

TEST_CASE("timer_heap fires equal deadlines in arming order", "[primitives][timer]") {
  using palitra::detail::timer_heap;
  using palitra::detail::timer_node;
  constexpr int n = 257; // not a power of two: a ragged last level
  std::vector<timer_node> nodes(n);
  timer_heap heap;
  const auto d = steady::time_point{} + 5s;
  for (auto& t : nodes) {
    t.deadline = d;
    heap.push(t);
  }
  // Erase every third one; the rest must keep their relative order.
  for (int i = 0; i < n; i += 3) heap.erase(nodes[i]);
  REQUIRE(heap.valid());
  for (int i = 0; i < n; ++i) {
    if (i % 3 == 0) continue;
    REQUIRE(heap.pop() == &nodes[i]);
  }
  REQUIRE(heap.empty());
  // Re-arming a popped node puts it behind nodes armed earlier at the same time.
  heap.push(nodes[1]);
  heap.push(nodes[0]);
  heap.push(nodes[2]);
  REQUIRE(heap.pop() == &nodes[1]);
  REQUIRE(heap.pop() == &nodes[0]);
  REQUIRE(heap.pop() == &nodes[2]);
}

// ---- completion_slot and address wait ----------------------------------------

TEST_CASE("completion_slot: publish and wait from two threads, both wait backends",
          "[primitives][slot]") {
  watchdog w(60s);
  for (wait_backend b : {wait_backend::native, wait_backend::portable}) {
    for (auto spin : {std::chrono::nanoseconds(0), std::chrono::nanoseconds(20us)}) {
      INFO("backend " << name_of(b) << " spin " << spin.count() << "ns");
      backend_scope scope(b);
      // The slot lives on this thread's stack and is rebuilt at the same
      // address each round: a late wake meant for round i may hit round i+1
      // (completion_slot.hpp I2), which must be tolerated.
      struct mailbox {
        std::atomic<completion_slot*> slot{nullptr};
        int* value = nullptr;
        int round = 0;
      } box;
      std::atomic<bool> stop{false};
      constexpr int rounds = 3000;
      std::thread publisher([&] {
        int served = 0;
        while (served < rounds && !stop.load(std::memory_order_relaxed)) {
          // acquire: pairs with the release store of the slot pointer below.
          completion_slot* s = box.slot.load(std::memory_order_acquire);
          if (s == nullptr) {
            std::this_thread::yield();
            continue;
          }
          box.slot.store(nullptr, std::memory_order_relaxed);
          const int r = box.round;
          // Every 8th round the publisher dawdles, so the waiter is asleep.
          if (r % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50 + r % 150));
          *box.value = r * 3 + 1;
          s->publish(); // the slot may be gone from here on
          ++served;
        }
      });
      int wrong = 0;
      for (int r = 0; r < rounds; ++r) {
        completion_slot slot;
        int value = -1;
        box.value = &value;
        box.round = r;
        // release: hands value/round to the publisher's acquire load.
        box.slot.store(&slot, std::memory_order_release);
        slot.wait(spin);
        if (!slot.is_done() || value != r * 3 + 1) ++wrong;
      }
      stop = true;
      publisher.join();
      REQUIRE(wrong == 0);
    }
  }
}

TEST_CASE("completion_slot: wait blocks until the publish", "[primitives][slot]") {
  watchdog w(30s);
  for (wait_backend b : {wait_backend::native, wait_backend::portable}) {
    INFO("backend " << name_of(b));
    backend_scope scope(b);
    completion_slot slot;
    std::atomic<bool> published{false};
    std::thread t([&] {
      std::this_thread::sleep_for(20ms);
      published.store(true, std::memory_order_relaxed);
      slot.publish();
    });
    const auto t0 = steady::now();
    slot.wait(std::chrono::nanoseconds(0)); // straight to the address wait
    REQUIRE(published.load(std::memory_order_relaxed));
    REQUIRE(slot.is_done());
    REQUIRE(steady::now() - t0 >= 15ms);
    t.join();
    // Waiting on a published slot returns at once.
    slot.wait(std::chrono::nanoseconds(0));
    REQUIRE(slot.wait_until(steady::now() - 1s, std::chrono::nanoseconds(0)));
  }
}

TEST_CASE("completion_slot: wait_until times out, then a later publish is seen",
          "[primitives][slot]") {
  watchdog w(30s);
  for (wait_backend b : {wait_backend::native, wait_backend::portable}) {
    for (auto spin : {std::chrono::nanoseconds(0), std::chrono::nanoseconds(1ms)}) {
      INFO("backend " << name_of(b) << " spin " << spin.count() << "ns");
      backend_scope scope(b);
      completion_slot slot;
      // A deadline already past: false at once, without sleeping.
      REQUIRE_FALSE(slot.wait_until(steady::now() - 1ms, spin));
      const auto t0 = steady::now();
      const auto deadline = t0 + 25ms;
      REQUIRE_FALSE(slot.wait_until(deadline, spin));
      const auto t1 = steady::now();
      REQUIRE(t1 >= deadline); // never early
      REQUIRE(t1 - t0 < 2s);
      REQUIRE_FALSE(slot.is_done());
      // The word is left at slot_waiting: a second timed wait works too.
      REQUIRE_FALSE(slot.wait_until(steady::now() + 5ms, spin));
      // A publish after the timeouts wakes a later waiter (timed and untimed).
      int value = 0;
      std::thread t([&] {
        std::this_thread::sleep_for(10ms);
        value = 99;
        slot.publish();
      });
      REQUIRE(slot.wait_until(steady::now() + 20s, spin));
      REQUIRE(value == 99); // visible after A1 (is_done's acquire)
      slot.wait(spin);
      REQUIRE(slot.is_done());
      t.join();
    }
  }
}

TEST_CASE("address_wait_until returns false at the deadline, both backends", "[primitives][wait]") {
  watchdog w(30s);
  for (wait_backend b : {wait_backend::native, wait_backend::portable}) {
    INFO("backend " << name_of(b));
    backend_scope scope(b);
    std::atomic<std::uint32_t> word{7};
    const auto t0 = steady::now();
    const auto deadline = t0 + 30ms;
    int spurious = 0;
    // A true return may be spurious (the contract); false only at the deadline.
    while (palitra::detail::address_wait_until(word, 7, deadline)) {
      REQUIRE(++spurious < 1000);
    }
    const auto t1 = steady::now();
    REQUIRE(t1 >= deadline);
    REQUIRE(t1 - t0 < 2s);
    // A deadline already past: false without blocking.
    REQUIRE_FALSE(palitra::detail::address_wait_until(word, 7, steady::now() - 1ms));
    // A word that does not hold `expected`: returns at once, not at the deadline.
    const auto t2 = steady::now();
    (void)palitra::detail::address_wait_until(word, 8, steady::now() + 10s);
    REQUIRE(steady::now() - t2 < 5s);
  }
}

TEST_CASE("address_wake_all releases every waiter of the word, both backends", "[primitives][wait]") {
  watchdog w(30s);
  for (wait_backend b : {wait_backend::native, wait_backend::portable}) {
    INFO("backend " << name_of(b));
    backend_scope scope(b);
    std::atomic<std::uint32_t> word{0};
    std::atomic<int> released{0};
    std::vector<std::thread> ts;
    for (int i = 0; i < 4; ++i)
      ts.emplace_back([&] {
        // acquire: pairs with the release store of 1 below.
        while (word.load(std::memory_order_acquire) == 0) palitra::detail::address_wait(word, 0);
        released.fetch_add(1, std::memory_order_relaxed);
      });
    std::this_thread::sleep_for(20ms); // let them sleep (a wake before that is fine too)
    word.store(1, std::memory_order_release);
    palitra::detail::address_wake_all(&word);
    for (auto& t : ts) t.join();
    REQUIRE(released == 4);
  }
}

TEST_CASE("the whole run() path works with the portable wait backend", "[primitives][wait][run]") {
  watchdog w(60s);
  backend_scope scope(wait_backend::portable); // before the runner exists
  {
    palitra::runner_options o;
    o.caller_spin = std::chrono::nanoseconds(0); // callers sleep on the address wait
    o.loop_spin = std::chrono::nanoseconds(0);
    palitra::runner r(o);
    constexpr int threads = 4, calls = 300;
    std::atomic<int> wrong{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        for (int i = 0; i < calls; ++i) {
          auto f = [](int v) -> palitra::task<int> {
            if (v % 2 == 0) co_await palitra::yield();
            if (v % 50 == 1) co_await palitra::sleep_for(100us);
            co_return v + 1;
          };
          const int v = t * 1000 + i;
          if (r.run(f, v) != v + 1) ++wrong;
        }
      });
    for (auto& t : ts) t.join();
    REQUIRE(wrong == 0);
    // Timeout and future paths go through the same slot.
    auto slow = []() -> palitra::task<int> {
      co_await palitra::sleep_for(10s);
      co_return 0;
    };
    REQUIRE_THROWS_AS(r.run(slow(), 10ms), palitra::timeout_error);
    auto fut = r.submit([]() -> palitra::task<int> {
      co_await palitra::sleep_for(2ms);
      co_return 5;
    }());
    REQUIRE(fut.wait_for(20s)); // the timed slot wait on the portable backend
    REQUIRE(fut.get() == 5);
    auto s = r.stats();
    palitra_test::require_quiet(s);
    REQUIRE(s.completed == threads * calls + 1);
    REQUIRE(s.cancelled == 1);
  }
  REQUIRE(palitra::detail::get_wait_backend() == wait_backend::portable);
}

// ---- mpsc_queue ----------------------------------------------------------------

namespace {
struct tagged_node : palitra::detail::queue_node {
  int producer = 0;
  int seq = 0;
};
} // namespace

TEST_CASE("mpsc_queue: take_all returns one producer's pushes in order", "[primitives][queue]") {
  palitra::detail::mpsc_queue q;
  REQUIRE(q.take_all() == nullptr);
  REQUIRE(q.empty_seq_cst());
  std::vector<tagged_node> nodes(100);
  for (int i = 0; i < 100; ++i) {
    nodes[i].seq = i;
    q.push(&nodes[i]);
    REQUIRE_FALSE(q.empty_hint());
  }
  int expect = 0;
  for (auto* n = q.take_all(); n != nullptr; n = n->next)
    REQUIRE(static_cast<tagged_node*>(n)->seq == expect++);
  REQUIRE(expect == 100);
  REQUIRE(q.take_all() == nullptr);
  REQUIRE(q.empty_seq_cst());
}

TEST_CASE("mpsc_queue: FIFO per producer with 8 producer threads", "[primitives][queue]") {
  watchdog w(60s);
  constexpr int producers = 8;
#if defined(PALITRA_TSAN)
  constexpr int per_producer = 5000; // TSan is ~10x slower; same interleavings
#else
  constexpr int per_producer = 50000;
#endif
  palitra::detail::mpsc_queue q;
  std::vector<std::vector<tagged_node>> nodes(producers, std::vector<tagged_node>(per_producer));
  std::atomic<int> ready{0};
  std::vector<std::thread> ts;
  for (int p = 0; p < producers; ++p)
    ts.emplace_back([&, p] {
      ready.fetch_add(1);
      while (ready.load() < producers) std::this_thread::yield();
      for (int i = 0; i < per_producer; ++i) {
        tagged_node& n = nodes[p][i];
        n.producer = p;
        n.seq = i;
        q.push(&n); // Q1 publishes producer/seq to the consumer's Q2
        if (i % 1024 == 0) std::this_thread::yield();
      }
    });
  std::vector<int> next(producers, 0);
  long total = 0, batches = 0, out_of_order = 0, garbage = 0;
  while (total < long(producers) * per_producer) {
    auto* n = q.take_all();
    if (n == nullptr) {
      std::this_thread::yield();
      continue;
    }
    ++batches;
    for (; n != nullptr; n = n->next) {
      auto* t = static_cast<tagged_node*>(n);
      if (t->producer < 0 || t->producer >= producers) {
        ++garbage;
        continue;
      }
      if (t->seq != next[t->producer]) ++out_of_order;
      next[t->producer] = t->seq + 1;
      ++total;
    }
  }
  for (auto& t : ts) t.join();
  REQUIRE(q.take_all() == nullptr);
  REQUIRE(garbage == 0);
  REQUIRE(out_of_order == 0);
  REQUIRE(total == long(producers) * per_producer);
  for (int p = 0; p < producers; ++p) REQUIRE(next[p] == per_producer);
  std::printf("mpsc_queue: %ld nodes in %ld batches\n", total, batches);
}

namespace {
palitra::task<int> cached_frame(int v) { co_return v; }

// A bigger frame than cached_frame's, suspended once.
palitra::task<int> big_frame(int k) {
  int pad[64] = {};
  pad[k & 63] = 3;
  co_await palitra::yield();
  co_return pad[k & 63];
}

// Holds an unstarted task in a thread_local: its frame is freed when the
// thread exits, by this destructor.
struct frame_holder {
  palitra::task<int> t = cached_frame(7);
};
} // namespace

TEST_CASE("frames stay sound across the per-thread frame cache and thread exit",
          "[primitives][alloc]") {
  watchdog w(60s);
  palitra::runner r;
  std::atomic<long> sum{0};
  std::vector<std::thread> ts;
  for (int k = 0; k < 4; ++k)
    ts.emplace_back([&, k] {
      // Constructed before this thread caches its first frame, so it is
      // destroyed after the cache's exit flusher ran: its frame must then
      // bypass the cache (frame_allocator.cpp, state `gone`).
      thread_local frame_holder holder;
      static_cast<void>(&holder);
      long local = 0;
      // Different frame sizes, interleaved, more of them alive at once
      // than the cache has slots: every reuse must hand back a block of
      // the size asked for.
      for (int i = 0; i < 2000; ++i) {
        local += r.run(cached_frame(1));
        auto a = cached_frame(2);
        auto b = big_frame(k + i);
        auto c = cached_frame(4);
        local += r.run(std::move(b)) + r.run(std::move(c)) + r.run(std::move(a));
      }
      sum.fetch_add(local);
    });
  for (auto& t : ts) t.join();
  REQUIRE(sum.load() == 4L * 2000 * 10);
  const auto s = r.stats();
  REQUIRE(s.completed == s.submitted);
}

#if defined(__x86_64__) && defined(__GLIBCXX__)
// bench/inflight.cpp measured 52 B more per in-flight submit()/spawn() when
// the heap root grew from 256 to 264 B, out of mimalloc's 256-byte class.
static_assert(sizeof(palitra::detail::heap_call<int>) <= 256,
              "heap_call<int> left mimalloc's 256-byte size class");
#endif
