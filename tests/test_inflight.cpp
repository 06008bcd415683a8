// Many calls in flight on one loop (issue #4): close() with 100,000 futures
// and 100,000 spawned tasks suspended in long sleeps (10,000 under
// sanitizers) cancels every one, every future reports runner_closed_error,
// every frame is destroyed and the counters balance. No timing assertion:
// the close() time is measured by bench/inflight.cpp (palitra_inflight).
// Also: submit/spawn/post roots come from the frame allocator
// (runner.hpp, detail::frame_allocated), including an over-aligned post().
#include <atomic>
#include <cstdint>
#include <vector>

#include "support.hpp"

#include <palitra/config.hpp>

#include "runtime/loop.hpp"

using namespace std::chrono_literals;
using palitra_test::watchdog;

namespace {

constexpr std::size_t many =
#if defined(PALITRA_TSAN) || defined(PALITRA_ASAN)
    10000;
#else
    100000;
#endif

std::atomic<int> g_alive{0};    // frames alive (a probe parameter each)
std::atomic<long> g_entered{0}; // coroutines that reached their sleep

palitra::task<int> long_nap(palitra_test::probe p, int v) {
  (void)p;
  g_entered.fetch_add(1);
  co_await palitra::sleep_for(3600s); // only close() ends this
  co_return v;
}

palitra::task<void> long_nap_void(palitra_test::probe p) {
  (void)p;
  g_entered.fetch_add(1);
  co_await palitra::sleep_for(3600s);
}

palitra::task<int> triple(int v) { co_return v * 3; }

/// Polls until the loop accepted `accepted` calls and `entered` coroutines
/// reached their sleep (no deadline of its own: the watchdog is the limit).
void wait_in_flight(palitra::runner& r, std::uint64_t accepted, int entered) {
  while (r.stats().submitted < accepted || g_entered.load() < entered)
    std::this_thread::sleep_for(1ms);
}

} // namespace

TEST_CASE("close with many futures and spawned tasks in flight (100k each) cancels every one",
          "[inflight][close]") {
  watchdog w(120s, "close with many calls in flight");
  g_alive = 0;
  g_entered = 0;
  std::atomic<long> reported{0};
  palitra::runner_options o;
  o.on_unhandled_error = [&](std::exception_ptr) { reported.fetch_add(1); };
  palitra::runner r(o);

  std::vector<palitra::future<int>> fs;
  fs.reserve(many);
  for (std::size_t i = 0; i < many; ++i)
    fs.push_back(r.submit(long_nap(palitra_test::probe(g_alive), static_cast<int>(i))));
  for (std::size_t i = 0; i < many; ++i) r.spawn(long_nap_void(palitra_test::probe(g_alive)));
  wait_in_flight(r, 2 * many, static_cast<int>(2 * many));

  const auto before = r.stats();
  INFO("in_flight before close: " << before.in_flight);
  REQUIRE(before.in_flight == 2 * many); // all of them at once
  REQUIRE(before.completed + before.failed + before.cancelled == 0);
  REQUIRE(g_alive.load() == static_cast<int>(2 * many));

  r.close();
  REQUIRE(r.closed());

  // Every frame, futures' included, is destroyed by the loop before close()
  // returns (DESIGN.md §4); a future keeps only its result.
  REQUIRE(g_alive.load() == 0);
  std::size_t closed = 0, other = 0;
  for (auto& f : fs) {
    REQUIRE(f.ready());
    try {
      (void)f.get();
      ++other;
    } catch (const palitra::runner_closed_error&) {
      ++closed;
    } catch (...) {
      ++other;
    }
  }
  CHECK(other == 0);
  REQUIRE(closed == many);
  REQUIRE(g_alive.load() == 0);

  const auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.submitted == 2 * many);
  REQUIRE(s.cancelled == 2 * many);
  REQUIRE(s.completed == 0);
  REQUIRE(s.failed == 0);
  REQUIRE(reported.load() == 0); // close() does not report spawned tasks it ended
  REQUIRE_THROWS_AS(r.submit(triple(0)), palitra::runner_closed_error);
}

TEST_CASE("the runner destructor with many spawned tasks in flight destroys every frame",
          "[inflight][close]") {
  watchdog w(120s, "destructor with many spawned tasks in flight");
  g_alive = 0;
  g_entered = 0;
  {
    palitra::runner r;
    for (std::size_t i = 0; i < many; ++i)
      r.spawn(long_nap_void(palitra_test::probe(g_alive)));
    wait_in_flight(r, many, static_cast<int>(many));
    REQUIRE(r.stats().in_flight == many);
  }
  REQUIRE(g_alive.load() == 0);
}

TEST_CASE("submit, spawn and post roots (frame allocator) work, over-aligned post included",
          "[inflight][alloc]") {
  watchdog w(30s);
  palitra::runner r;
  g_alive = 0;
  auto f = r.submit(palitra_test::counted_sleeper(palitra_test::probe(g_alive)));
  f.cancel();
  REQUIRE_THROWS_AS(f.get(), palitra::cancelled_error);
  REQUIRE(g_alive.load() == 0);

  struct alignas(64) wide {
    unsigned char bytes[64] = {};
  };
  std::atomic<int> ran{0};
  std::atomic<bool> aligned{true};
  for (int i = 0; i < 100; ++i) {
    wide big;
    big.bytes[0] = static_cast<unsigned char>(i);
    r.post([big, &ran, &aligned, i] {
      if (reinterpret_cast<std::uintptr_t>(&big) % 64 != 0) aligned = false;
      if (big.bytes[0] != static_cast<unsigned char>(i)) aligned = false;
      ++ran;
    });
    r.post([&ran] { ++ran; });
  }
  std::atomic<int> spawned{0};
  for (int i = 0; i < 100; ++i)
    r.spawn([&spawned]() -> palitra::task<void> {
      co_await palitra::yield();
      ++spawned;
    });
  std::vector<palitra::future<int>> fs;
  for (int i = 0; i < 100; ++i)
    fs.push_back(r.submit(triple(i)));
  for (int i = 0; i < 100; ++i) REQUIRE(fs[i].get() == i * 3);
  while (ran.load() < 200 || spawned.load() < 100) std::this_thread::sleep_for(1ms);
  const auto s = palitra_test::settled_stats(r);
  palitra_test::require_quiet(s);
  REQUIRE(ran.load() == 200);
  REQUIRE(aligned.load());
  REQUIRE(spawned.load() == 100);
}

namespace {

palitra::task<int> nap_then(int v) {
  co_await palitra::sleep_for(3600s); // never fires: the timeout cancels it
  co_return v;
}

palitra::task<std::size_t> many_timeouts(std::size_t n) {
  std::vector<palitra::task<int>> ts;
  ts.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    // Two timers per task (the inner sleep, the timeout), deadlines spread
    // over 1-50 ms so that arming and removal hit every part of the heap.
    auto guarded = [](int v, std::chrono::milliseconds d) -> palitra::task<int> {
      try {
        co_return co_await palitra::with_timeout(nap_then(v), d);
      } catch (const palitra::timeout_error&) {
        co_return -1;
      }
    };
    ts.push_back(guarded(static_cast<int>(i), std::chrono::milliseconds(1 + i % 50)));
  }
  const auto results = co_await palitra::when_all(std::move(ts));
  std::size_t timed_out = 0;
  for (const int r : results) timed_out += r == -1 ? 1 : 0;
  // White box: every cancelled sleep and every fired timeout left the heap.
  REQUIRE(palitra::detail::current_loop()->timer_count() == 0);
  co_return timed_out;
}

} // namespace

TEST_CASE("one hundred thousand concurrent sleeps cancelled by their timeouts leave no timer behind",
          "[inflight][timer]") {
  watchdog dog(120s);
  palitra::runner r;
  REQUIRE(r.run(many_timeouts(many)) == many);
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}
