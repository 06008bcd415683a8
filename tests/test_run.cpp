// runner::run and the global run(): values, exceptions, lifetimes, timeouts.
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using palitra_test::watchdog;

namespace {

palitra::task<int> add(int a, int b) { co_return a + b; }
palitra::task<void> nothing() { co_return; }

struct custom_error : std::runtime_error {
  explicit custom_error(int c) : std::runtime_error("custom " + std::to_string(c)), code(c) {}
  int code;
};

palitra::task<int> fail_with(int c) {
  co_await palitra::yield();
  throw custom_error(c);
}

/// Counts copies and moves; a frame parameter that records its destruction.
struct tracker {
  static inline std::atomic<int> copies{0}, moves{0}, alive{0};
  tracker() { ++alive; }
  tracker(const tracker&) { ++copies; ++alive; }
  tracker(tracker&&) noexcept { ++moves; ++alive; }
  ~tracker() { --alive; }
};

} // namespace

TEST_CASE("run returns the coroutine's value", "[run]") {
  watchdog w(30s);
  palitra::runner r;
  REQUIRE(r.run(add(2, 3)) == 5);
  r.run(nothing());
  REQUIRE(r.run(add(-1, 1)) == 0);
  palitra_test::require_quiet(r.stats());
  REQUIRE(r.stats().submitted == 3);
  REQUIRE(r.stats().completed == 3);
}

TEST_CASE("exceptions cross the thread boundary intact", "[run]") {
  watchdog w(30s);
  palitra::runner r;
  try {
    r.run(fail_with(42));
    FAIL("no exception");
  } catch (const custom_error& e) {
    REQUIRE(e.code == 42);
    REQUIRE(std::string(e.what()) == "custom 42");
  }
  REQUIRE(r.stats().failed == 1);
  palitra_test::require_quiet(r.stats());
}

TEST_CASE("nested exceptions survive the crossing", "[run]") {
  watchdog w(30s);
  palitra::runner r;
  auto outer = []() -> palitra::task<int> {
    try {
      co_await fail_with(7);
    } catch (...) {
      std::throw_with_nested(std::logic_error("outer"));
    }
    co_return 0;
  };
  try {
    r.run(outer);
    FAIL("no exception");
  } catch (const std::logic_error& e) {
    REQUIRE(std::string(e.what()) == "outer");
    try {
      std::rethrow_if_nested(e);
      FAIL("not nested");
    } catch (const custom_error& inner) {
      REQUIRE(inner.code == 7);
    }
  }
}

TEST_CASE("state on the loop survives from one call to the next", "[run]") {
  watchdog w(30s);
  palitra::runner r;
  static int counter = 0; // touched only on the loop thread
  auto bump = []() -> palitra::task<int> { co_return ++counter; };
  for (int i = 1; i <= 100; ++i) REQUIRE(r.run(bump) == i);
}

TEST_CASE("results are moved, never copied", "[run]") {
  watchdog w(30s);
  palitra::runner r;
  auto make = []() -> palitra::task<tracker> { co_return tracker{}; };
  tracker::copies = 0;
  {
    tracker t = r.run(make);
    (void)t;
  }
  REQUIRE(tracker::copies == 0);
  auto uptr = []() -> palitra::task<std::unique_ptr<int>> { co_return std::make_unique<int>(9); };
  REQUIRE(*r.run(uptr) == 9);
}

TEST_CASE("the frame is destroyed before run returns or throws", "[run]") {
  watchdog w(30s);
  palitra::runner r;
  auto holds = [](tracker) -> palitra::task<int> {
    co_await palitra::yield();
    co_return 1;
  };
  tracker::alive = 0;
  REQUIRE(r.run(holds(tracker{})) == 1);
  REQUIRE(tracker::alive == 0);
  auto holds_throw = [](tracker) -> palitra::task<int> {
    co_await palitra::yield();
    throw std::runtime_error("x");
  };
  REQUIRE_THROWS_AS(r.run(holds_throw(tracker{})), std::runtime_error);
  REQUIRE(tracker::alive == 0);
  auto holds_sleep = [](tracker) -> palitra::task<int> {
    co_await palitra::sleep_for(10s);
    co_return 1;
  };
  REQUIRE_THROWS_AS(r.run(holds_sleep(tracker{}), 5ms), palitra::timeout_error);
  REQUIRE(tracker::alive == 0);
}

TEST_CASE("the callable overload keeps lambda captures alive", "[run]") {
  watchdog w(30s);
  palitra::runner r;
  auto big = std::make_shared<std::vector<int>>(1000, 3);
  int sum = r.run([big]() -> palitra::task<int> {
    co_await palitra::sleep_for(1ms);
    int s = 0;
    for (int x : *big) s += x; // the capture is still alive after suspending
    co_return s;
  });
  REQUIRE(sum == 3000);
  REQUIRE(big.use_count() == 1);
  // Arguments are moved into the frame too; move-only callables work.
  auto p = std::make_unique<int>(5);
  REQUIRE(r.run([p = std::move(p)](int k) -> palitra::task<int> {
    co_await palitra::yield();
    co_return *p * k;
  }, 3) == 15);
}

TEST_CASE("run with a timeout: deadline, value first, zero and negative timeouts", "[run][timeout]") {
  watchdog w(30s);
  palitra::runner r;
  auto slow = []() -> palitra::task<int> {
    co_await palitra::sleep_for(10s);
    co_return 1;
  };
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE_THROWS_AS(r.run(slow(), 20ms), palitra::timeout_error);
  REQUIRE(std::chrono::steady_clock::now() - t0 >= 20ms); // never early
  REQUIRE(r.run(add(1, 1), 10s) == 2);
  // Non-positive: the task still starts; finishing before its first
  // suspension returns the value.
  REQUIRE(r.run(add(2, 2), 0ms) == 4);
  REQUIRE(r.run(add(2, 3), -5ms) == 5);
  REQUIRE_THROWS_AS(r.run(slow(), 0ms), palitra::timeout_error);
  // A task that catches the cancellation and returns a value keeps it.
  auto stubborn = []() -> palitra::task<int> {
    try {
      co_await palitra::sleep_for(10s);
    } catch (const palitra::cancelled_error&) {
      co_return 77;
    }
    co_return 0;
  };
  REQUIRE(r.run(stubborn(), 5ms) == 77);
  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.cancelled == 2);
}

TEST_CASE("timeouts use any duration type", "[run][timeout]") {
  watchdog w(30s);
  palitra::runner r;
  REQUIRE(r.run(add(1, 2), std::chrono::duration<double>(0.5)) == 3);
  REQUIRE(r.run(add(1, 2), std::chrono::hours::max()) == 3);
  REQUIRE(r.run(add(1, 2), std::chrono::nanoseconds(1'000'000'000)) == 3);
}

TEST_CASE("run on the loop thread throws reentrancy_error instead of deadlocking", "[run][misuse]") {
  watchdog w(30s);
  palitra::runner r;
  auto inner = [&r]() -> palitra::task<int> {
    try {
      r.run(add(1, 1));
    } catch (const palitra::reentrancy_error& e) {
      REQUIRE(std::string(e.what()).find("palitra::run") != std::string::npos);
      co_return 1;
    }
    co_return 0;
  };
  REQUIRE(r.run(inner) == 1);
  auto closer = [&r]() -> palitra::task<int> {
    try {
      r.close();
    } catch (const palitra::reentrancy_error&) {
      co_return 1;
    }
    co_return 0;
  };
  REQUIRE(r.run(closer) == 1);
  REQUIRE_FALSE(r.closed()); // a rejected close() has no effect
  REQUIRE(r.run(add(3, 4)) == 7);
}

TEST_CASE("a blocking call on another runner from a loop thread is allowed", "[run]") {
  watchdog w(30s);
  palitra::runner a, b;
  auto via_b = [&b]() -> palitra::task<int> { co_return b.run(add(20, 22)); };
  REQUIRE(a.run(via_b) == 42);
}

TEST_CASE("an empty task is rejected with a clear error", "[run][misuse]") {
  palitra::runner r;
  palitra::task<int> t = add(1, 2);
  palitra::task<int> moved = std::move(t);
  REQUIRE_THROWS_AS(r.run(std::move(t)), palitra::error);
  REQUIRE(r.run(std::move(moved)) == 3);
}

TEST_CASE("many threads call run at once and each gets its own result", "[run][threads]") {
  watchdog w(60s);
  palitra::runner r;
  constexpr int threads = 16, calls = 300;
  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < calls; ++i) {
        auto f = [](int v) -> palitra::task<int> {
          if (v % 3 == 0) co_await palitra::yield();
          co_return v * 2;
        };
        if (r.run(f, t * 10000 + i) != (t * 10000 + i) * 2) ++wrong;
      }
    });
  for (auto& t : ts) t.join();
  REQUIRE(wrong == 0);
  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.completed == threads * calls);
}

TEST_CASE("a 1,000,000-deep co_await chain does not grow the stack", "[task][deep]") {
#if !defined(PALITRA_TAIL_CALLS_GUARANTEED)
  WARN("skipped: this toolchain/optimisation level does not keep symmetric transfer's tail "
       "call (gcc < -O2 or with sanitizers); see README 'Toolchains'");
  return;
#else
  watchdog w(120s);
  palitra::runner r;
  struct deep {
    static palitra::task<long> chain(long n) {
      if (n == 0) co_return 0;
      co_return 1 + co_await chain(n - 1);
    }
  };
  REQUIRE(r.run(deep::chain(1'000'000)) == 1'000'000);
#endif
}

TEST_CASE("this_task::cancelled is false outside tasks and turns true on cancellation",
          "[cancel]") {
  watchdog w(30s);
  REQUIRE_FALSE(palitra::this_task::cancelled());
  palitra::runner r;
  auto spin = []() -> palitra::task<int> {
    int polls = 0;
    REQUIRE_FALSE(palitra::this_task::cancelled());
    while (!palitra::this_task::cancelled()) {
      ++polls;
      std::this_thread::sleep_for(100us); // CPU-bound work that never awaits
    }
    co_await palitra::yield(); // the next cancellation point throws
    co_return polls;
  };
  // 100 ms, not less: the task must start before its deadline for the first
  // check to hold, and a loaded 2-core CI machine can delay a start by ms.
  REQUIRE_THROWS_AS(r.run(spin(), 100ms), palitra::timeout_error);
}
