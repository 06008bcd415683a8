// runner::submit and future<T>; spawn; post; calls on a closed or closing
// runner; the stats counters' buckets.
//
// Synchronisation used by these tests (never a sleep):
//   - sync(r) runs an empty task on r. Submissions from one thread are taken
//     FIFO and every started task runs to its first suspension before a task
//     started later, so when sync(r) returns, every task submitted before it
//     by this thread has reached its first suspension point.
//   - After a spawn, settle(r, n): waits until the loop accepted n calls and
//     has none in flight, then sync(r): the loop has finished publishing (and
//     reporting) everything, and sync's completion publishes the loop's
//     writes to this thread.
//   - Loop-side logs are read only after a blocking call returned, or after
//     close() (the join).
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using palitra_test::watchdog;
using clk = std::chrono::steady_clock;

namespace {

using palitra_test::custom_error;
using palitra_test::event_log;
using palitra_test::marker;
using palitra_test::probe;
using palitra_test::sleeper;
using palitra_test::void_sleeper;
using palitra_test::counted_sleeper;

/// Collects what on_unhandled_error receives (on the loop thread).
struct error_sink {
  std::function<void(std::exception_ptr)> handler() {
    return [this](std::exception_ptr e) {
      std::lock_guard<std::mutex> g(m);
      errors.push_back(std::move(e));
    };
  }
  std::size_t count() {
    std::lock_guard<std::mutex> g(m);
    return errors.size();
  }
  std::exception_ptr at(std::size_t i) {
    std::lock_guard<std::mutex> g(m);
    return errors.at(i);
  }
  std::mutex m;
  std::vector<std::exception_ptr> errors;
};

std::string log_text(const event_log& log) {
  std::string s;
  for (const auto& e : log) s += "[" + e + "] ";
  return s;
}

bool has(const event_log& log, const std::string& e) {
  for (const auto& x : log)
    if (x == e) return true;
  return false;
}

palitra::task<int> add(int a, int b) { co_return a + b; }
palitra::task<void> nothing() { co_return; }

palitra::task<int> fail_with(int c) {
  co_await palitra::yield();
  throw custom_error(c);
}

palitra::task<void> counted_void_sleeper(probe p) {
  (void)p;
  co_await palitra::sleep_for(10s);
}

/// A barrier: see the file comment.
void sync(palitra::runner& r) { r.run(nothing()); }

/// Waits (bounded) until the loop accepted `submitted` calls and finished
/// them all, then sync(r): spawned work has ended and been reported.
void settle(palitra::runner& r, std::uint64_t submitted) {
  for (int i = 0; i < 5000; ++i) {
    const auto s = r.stats();
    if (s.submitted >= submitted && s.in_flight == 0) break;
    std::this_thread::sleep_for(1ms);
  }
  sync(r);
}

palitra::runner_options with_sink(error_sink& sink) {
  palitra::runner_options o;
  o.on_unhandled_error = sink.handler();
  return o;
}

} // namespace

// ---------------------------------------------------------------------------
// submit / future
// ---------------------------------------------------------------------------

TEST_CASE("future: get returns the value; wait_for and ready report completion", "[future]") {
  watchdog w(30s);
  palitra::runner r;
  auto f = r.submit(add(2, 3));
  REQUIRE(f.valid());
  REQUIRE(f.wait_for(10s));
  REQUIRE(f.ready());
  REQUIRE(f.wait_for(0ms)); // already done: true at once
  REQUIRE(f.get() == 5);
  REQUIRE_FALSE(f.valid());
  REQUIRE_FALSE(f.ready());

  // get() without wait_for blocks until the value is there.
  auto g = r.submit([]() -> palitra::task<std::unique_ptr<int>> {
    co_await palitra::sleep_for(2ms);
    co_return std::make_unique<int>(11);
  }());
  auto p = g.get();
  REQUIRE(*p == 11);

  // void futures.
  auto v = r.submit(nothing());
  v.get();

  // Several futures outstanding at once, retrieved out of order.
  std::vector<palitra::future<int>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(r.submit(add(i, i)));
  for (int i = 19; i >= 0; --i) REQUIRE(fs[static_cast<std::size_t>(i)].get() == 2 * i);

  // Moving a future moves the ownership.
  auto m1 = r.submit(add(1, 1));
  palitra::future<int> m2 = std::move(m1);
  REQUIRE_FALSE(m1.valid());
  REQUIRE(m2.get() == 2);

  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.submitted == 24);
  REQUIRE(s.completed == 24);
}

TEST_CASE("future: get rethrows the task's exception intact", "[future]") {
  watchdog w(30s);
  palitra::runner r;
  auto f = r.submit(fail_with(42));
  try {
    f.get();
    FAIL("no exception");
  } catch (const custom_error& e) {
    REQUIRE(e.code == 42);
    REQUIRE(std::string(e.what()) == "custom 42");
  }
  REQUIRE_FALSE(f.valid());
  palitra_test::require_quiet(r.stats());
  REQUIRE(r.stats().failed == 1);
}

TEST_CASE("future: wait_for returns false at its deadline, never earlier; cancel then ends it",
          "[future][cancel]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  auto f = r.submit(sleeper(marker(log, "s")));
  REQUIRE_FALSE(f.wait_for(0ms));
  REQUIRE_FALSE(f.wait_for(-1ms));
  const auto t0 = clk::now();
  REQUIRE_FALSE(f.wait_for(20ms));
  REQUIRE(clk::now() - t0 >= 20ms);
  REQUIRE_FALSE(f.ready());
  REQUIRE(f.valid());
  f.cancel();
  REQUIRE(f.wait_for(10s));
  REQUIRE(f.ready());
  REQUIRE_THROWS_AS(f.get(), palitra::cancelled_error);
  INFO(log_text(log));
  REQUIRE(log == event_log{"s cancelled", "s destroyed"});
  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.cancelled == 1);
}

TEST_CASE("future: cancel makes get throw cancelled_error after the frame is destroyed",
          "[future][cancel]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  std::atomic<int> alive{0};
  auto f = r.submit(sleeper(marker(log, "a")));
  auto g = r.submit(counted_sleeper(probe(alive)));
  sync(r); // both are suspended on their sleeps now
  f.cancel();
  f.cancel(); // idempotent
  REQUIRE_THROWS_AS(f.get(), palitra::cancelled_error);
  REQUIRE(log == event_log{"a cancelled", "a destroyed"});
  g.cancel();
  try {
    g.get();
    FAIL("no exception");
  } catch (const palitra::cancelled_error& e) {
    REQUIRE(std::string(e.what()).find("palitra::") != std::string::npos);
  }
  REQUIRE(alive == 0);

  // Cancelled before the loop even took the submission: still cancelled,
  // still awaited.
  auto h = r.submit(counted_sleeper(probe(alive)));
  h.cancel();
  REQUIRE_THROWS_AS(h.get(), palitra::cancelled_error);
  REQUIRE(alive == 0);

  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.cancelled == 3);
  REQUIRE(s.failed == 0);
}

TEST_CASE("future: cancel propagates into awaited children and groups", "[future][cancel]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  auto deep = [](event_log& l) -> palitra::task<int> {
    struct rec {
      static palitra::task<int> level(int n, event_log& l) {
        if (n == 0) co_return co_await sleeper(marker(l, "leaf"));
        co_return co_await level(n - 1, l);
      }
    };
    co_return co_await rec::level(100, l);
  };
  auto f = r.submit(deep(log));
  auto g = r.submit(palitra::when_all(sleeper(marker(log, "x")), sleeper(marker(log, "y"))));
  sync(r);
  f.cancel();
  g.cancel();
  REQUIRE_THROWS_AS(f.get(), palitra::cancelled_error);
  REQUIRE_THROWS_AS(g.get(), palitra::cancelled_error);
  INFO(log_text(log));
  for (const char* n : {"leaf", "x", "y"}) {
    REQUIRE(has(log, std::string(n) + " cancelled"));
    REQUIRE(has(log, std::string(n) + " destroyed"));
  }
  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.cancelled == 2);
}

TEST_CASE("future: this_task::cancelled turns true inside the task when another thread cancels",
          "[future][cancel]") {
  watchdog w(30s);
  palitra::runner r;
  std::atomic<bool> started{false};
  std::atomic<bool> saw_false_first{false};
  auto spin = [&]() -> palitra::task<int> {
    saw_false_first = !palitra::this_task::cancelled();
    started = true;
    int polls = 0;
    while (!palitra::this_task::cancelled()) { // CPU-bound: never awaits
      ++polls;
      std::this_thread::sleep_for(50us);
    }
    co_await palitra::yield(); // the next cancellation point throws
    co_return polls;
  };
  auto f = r.submit(spin());
  while (!started) std::this_thread::yield(); // bounded by the watchdog
  REQUIRE_FALSE(palitra::this_task::cancelled()); // not in a task here
  f.cancel();
  REQUIRE_THROWS_AS(f.get(), palitra::cancelled_error);
  REQUIRE(saw_false_first);
  palitra_test::require_quiet(r.stats());
}

TEST_CASE("future: a task that saw future::cancel through this_task::cancelled is counted "
          "cancelled",
          "[future][cancel][stats]") {
  watchdog w(30s);
  palitra::runner r;
  std::atomic<bool> started{false};
  auto spin = [&]() -> palitra::task<int> {
    started = true;
    while (!palitra::this_task::cancelled()) std::this_thread::sleep_for(50us);
    co_await palitra::yield(); // throws cancelled_error
    co_return 0;
  };
  auto f = r.submit(spin());
  while (!started) std::this_thread::yield();
  f.cancel();
  REQUIRE_THROWS_AS(f.get(), palitra::cancelled_error);
  auto s = r.stats();
  palitra_test::require_quiet(s);
  // DESIGN.md "Counters": future::cancel ends a call in `cancelled`.
  REQUIRE(s.failed == 0);
  REQUIRE(s.cancelled == 1);
}

TEST_CASE("future: cancel after completion has no effect", "[future][cancel]") {
  watchdog w(30s);
  palitra::runner r;
  auto f = r.submit(add(20, 22));
  REQUIRE(f.wait_for(10s));
  f.cancel();
  REQUIRE(f.get() == 42);

  auto g = r.submit(fail_with(3));
  REQUIRE(g.wait_for(10s));
  g.cancel();
  REQUIRE_THROWS_AS(g.get(), custom_error);
  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.completed == 1);
  REQUIRE(s.failed == 1);
  REQUIRE(s.cancelled == 0);
}

TEST_CASE("future: destroyed unwaited, it cancels and waits until the coroutine is gone",
          "[future][lifetime]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  std::atomic<int> alive{0};
  {
    auto f = r.submit(sleeper(marker(log, "a")));
    auto g = r.submit(counted_sleeper(probe(alive)));
    sync(r);
    REQUIRE(alive == 1);
  } // both destructors return only after the frames are gone
  REQUIRE(alive == 0);
  REQUIRE(log == event_log{"a cancelled", "a destroyed"});

  // Dropped before the loop took it.
  { auto h = r.submit(counted_sleeper(probe(alive))); }
  REQUIRE(alive == 0);

  // No orphan keeps running: a task that loops forever on yield stops.
  std::atomic<long> turns{0};
  {
    auto f = r.submit([](std::atomic<long>& t) -> palitra::task<void> {
      for (;;) {
        t.fetch_add(1, std::memory_order_relaxed);
        co_await palitra::yield();
      }
    }(turns));
    sync(r);
  }
  const long after = turns.load();
  sync(r);
  sync(r);
  REQUIRE(turns.load() == after);

  // A future whose task already finished: the destructor just frees it.
  {
    auto f = r.submit(add(1, 1));
    REQUIRE(f.wait_for(10s));
  }
  auto s = r.stats();
  palitra_test::require_quiet(s);
  // h, dropped right after submit, may reach its sleep before the loop pops
  // the cancel node: still counted cancelled (the request came first).
  REQUIRE(s.cancelled == 4);
  REQUIRE(s.failed == 0);
}

TEST_CASE("future: get and wait_for on the runner's own loop thread throw reentrancy_error",
          "[future][misuse]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  auto pending = r.submit(sleeper(marker(log, "p")));
  auto done = r.submit(add(1, 2));
  REQUIRE(done.wait_for(10s));
  auto misuse = [&]() -> palitra::task<int> {
    int n = 0;
    try {
      (void)pending.get();
    } catch (const palitra::reentrancy_error& e) {
      if (std::string(e.what()).find("palitra::future::get") != std::string::npos) ++n;
    }
    try {
      (void)pending.wait_for(1ms);
    } catch (const palitra::reentrancy_error& e) {
      if (std::string(e.what()).find("palitra::future::wait_for") != std::string::npos) ++n;
    }
    try {
      (void)done.get(); // even when ready: it is a blocking call
    } catch (const palitra::reentrancy_error&) {
      ++n;
    }
    co_return n;
  };
  REQUIRE(r.run(misuse) == 3);
  // The rejected calls had no effect.
  REQUIRE(pending.valid());
  REQUIRE(done.valid());
  REQUIRE(done.get() == 3);
  REQUIRE_FALSE(pending.ready());
  pending.cancel();
  REQUIRE_THROWS_AS(pending.get(), palitra::cancelled_error);
  REQUIRE(log == event_log{"p cancelled", "p destroyed"});
  palitra_test::require_quiet(r.stats());
}

TEST_CASE("future: destroyed unwaited on its own loop thread, the loop reclaims the frame",
          "[future][lifetime]") {
  watchdog w(30s);
  palitra::runner r;
  std::atomic<int> alive{0};
  std::atomic<bool> started{false};
  auto started_sleeper = [](std::atomic<bool>& s, probe p) -> palitra::task<int> {
    (void)p;
    s = true;
    co_await palitra::sleep_for(10s);
    co_return 1;
  };
  auto body = [&]() -> palitra::task<int> {
    {
      // Dropped before the loop took it.
      auto f = r.submit(counted_sleeper(probe(alive)));
    }
    {
      // Dropped while it sleeps.
      auto g = r.submit(started_sleeper(started, probe(alive)));
      while (!started) co_await palitra::yield();
    }
    {
      // Dropped after it finished (nothing to cancel).
      auto h = r.submit(add(1, 1));
      while (!h.ready()) co_await palitra::yield();
    }
    co_return 7;
  };
  REQUIRE(r.run(body) == 7);
  settle(r, 4); // body, f, g, h; g ends after body returned
  REQUIRE(alive == 0);
  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.submitted == 5);
  REQUIRE(s.cancelled == 2);
  REQUIRE(s.completed == 3);
}

TEST_CASE("future: get twice, or on a moved-from or empty future, throws palitra::error",
          "[future][misuse]") {
  watchdog w(30s);
  palitra::runner r;
  auto f = r.submit(add(1, 1));
  REQUIRE(f.get() == 2);
  try {
    f.get();
    FAIL("no exception");
  } catch (const palitra::error& e) {
    REQUIRE(std::string(e.what()).find("palitra::future::get") != std::string::npos);
  }
  REQUIRE_THROWS_AS(f.wait_for(1ms), palitra::error);
  f.cancel(); // no state: harmless

  auto g = r.submit(add(2, 2));
  auto g2 = std::move(g);
  REQUIRE_THROWS_AS(g.get(), palitra::error);
  REQUIRE(g2.get() == 4);

  palitra::future<int> empty;
  REQUIRE_FALSE(empty.valid());
  REQUIRE_FALSE(empty.ready());
  REQUIRE_THROWS_AS(empty.get(), palitra::error);
  palitra_test::require_quiet(r.stats());
}

TEST_CASE("future: close cancels an in-flight future; get works after the runner is gone",
          "[future][close]") {
  watchdog w(30s);
  event_log log;
  palitra::future<int> f, done;
  {
    palitra::runner r;
    f = r.submit(sleeper(marker(log, "s")));
    done = r.submit(add(3, 4));
    sync(r);
    REQUIRE(done.wait_for(10s));
  } // ~runner closes: the sleeper is cancelled and awaited
  REQUIRE(f.ready());
  REQUIRE_THROWS_AS(f.get(), palitra::runner_closed_error);
  REQUIRE(done.get() == 7);
  REQUIRE(log == event_log{"s cancelled", "s destroyed"});
}

// ---------------------------------------------------------------------------
// spawn
// ---------------------------------------------------------------------------

TEST_CASE("spawn: the task runs; an escaping exception goes to on_unhandled_error",
          "[spawn]") {
  watchdog w(30s);
  error_sink sink;
  palitra::runner r(with_sink(sink));
  std::atomic<int> hits{0};
  auto bump = [](std::atomic<int>& h) -> palitra::task<void> {
    co_await palitra::yield();
    ++h;
  };
  for (int i = 0; i < 10; ++i) r.spawn(bump(hits));
  r.spawn([]() -> palitra::task<void> {
    co_await palitra::sleep_for(1ms);
    throw custom_error(5);
  }());
  settle(r, 11);
  REQUIRE(hits == 10);
  REQUIRE(sink.count() == 1);
  try {
    std::rethrow_exception(sink.at(0));
  } catch (const custom_error& e) {
    REQUIRE(e.code == 5);
  }
  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.submitted == 12);
  REQUIRE(s.completed == 11);
  REQUIRE(s.failed == 1);
}

TEST_CASE("spawn: accepts a move-only lambda; its captures live as long as the coroutine",
          "[spawn]") {
  watchdog w(30s);
  error_sink sink;
  palitra::runner r(with_sink(sink));
  std::atomic<int> out{0};
  auto p = std::make_unique<int>(6);
  r.spawn([p = std::move(p), &out]() -> palitra::task<void> {
    co_await palitra::sleep_for(1ms);
    out = *p * 7; // the capture is still alive after suspending
  });
  settle(r, 1);
  REQUIRE(out == 42);
  REQUIRE(sink.count() == 0);
  palitra_test::require_quiet(r.stats());
}

TEST_CASE("spawn: close cancels and awaits spawned tasks and does not report them",
          "[spawn][close]") {
  watchdog w(30s);
  error_sink sink;
  event_log log;
  std::atomic<int> alive{0};
  palitra::runner r(with_sink(sink));
  r.spawn(void_sleeper(marker(log, "a")));
  r.spawn(counted_void_sleeper(probe(alive)));
  sync(r); // both suspended on their sleeps
  r.spawn(void_sleeper(marker(log, "late"))); // may be started or rejected
  r.close();
  INFO(log_text(log));
  REQUIRE(has(log, "a cancelled"));
  REQUIRE(has(log, "a destroyed"));
  REQUIRE(has(log, "late destroyed"));
  REQUIRE(alive == 0);
  REQUIRE(sink.count() == 0);
  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.submitted == 4);
  REQUIRE(s.cancelled == 3);
  REQUIRE(s.completed == 1);
}

// ---------------------------------------------------------------------------
// post
// ---------------------------------------------------------------------------

TEST_CASE("post: runs the callable on the loop thread; exceptions go to on_unhandled_error; "
          "move-only callables",
          "[post]") {
  watchdog w(30s);
  error_sink sink;
  palitra::runner r(with_sink(sink));
  bool on_loop = false;
  int order = 0, first = 0, second = 0;
  r.post([&] { on_loop = r.on_loop_thread(); first = ++order; });
  r.post([&] { second = ++order; });
  r.post([] { throw custom_error(8); });
  auto p = std::make_unique<int>(9);
  int got = 0;
  std::atomic<int> alive{0};
  r.post([p = std::move(p), &got, pr = probe(alive)] { got = *p; });
  sync(r); // the posts were queued before sync's task: they ran first
  REQUIRE(on_loop);
  REQUIRE(first == 1);
  REQUIRE(second == 2);
  REQUIRE(got == 9);
  REQUIRE(alive == 0); // the callable was destroyed after it ran
  REQUIRE(sink.count() == 1);
  REQUIRE_THROWS_AS(std::rethrow_exception(sink.at(0)), custom_error);
  REQUIRE_FALSE(r.on_loop_thread());

  // An lvalue callable is copied.
  int calls = 0;
  auto fn = [&calls] { ++calls; };
  r.post(fn);
  r.post(fn);
  sync(r);
  REQUIRE(calls == 2);
  palitra_test::require_quiet(r.stats());
}

// ---------------------------------------------------------------------------
// closed and closing runners
// ---------------------------------------------------------------------------

TEST_CASE("submit, spawn, post and run on a closed runner throw runner_closed_error; nothing "
          "runs",
          "[close][misuse]") {
  watchdog w(30s);
  palitra::runner r;
  r.close();
  REQUIRE(r.closed());
  std::atomic<int> alive{0};
  std::atomic<bool> ran{false};
  auto flag = [](std::atomic<bool>& f, probe p) -> palitra::task<int> {
    (void)p;
    f = true;
    co_return 1;
  };
  auto vflag = [](std::atomic<bool>& f, probe p) -> palitra::task<void> {
    (void)p;
    f = true;
    co_return;
  };
  try {
    (void)r.submit(flag(ran, probe(alive)));
    FAIL("no exception");
  } catch (const palitra::runner_closed_error& e) {
    REQUIRE(std::string(e.what()).find("submit") != std::string::npos);
  }
  REQUIRE(alive == 0); // the frame was freed, never run
  REQUIRE_THROWS_AS(r.spawn(vflag(ran, probe(alive))), palitra::runner_closed_error);
  REQUIRE(alive == 0);
  auto mo = std::make_unique<int>(1);
  REQUIRE_THROWS_AS(r.spawn([mo = std::move(mo), &ran]() -> palitra::task<void> {
    ran = true;
    co_return;
  }),
                    palitra::runner_closed_error);
  REQUIRE_THROWS_AS(r.post([&ran, pr = probe(alive)] { ran = true; }),
                    palitra::runner_closed_error);
  REQUIRE(alive == 0);
  auto mo2 = std::make_unique<int>(2);
  REQUIRE_THROWS_AS(r.post([mo2 = std::move(mo2), &ran] { ran = true; }),
                    palitra::runner_closed_error);
  REQUIRE_THROWS_AS(r.run(flag(ran, probe(alive))), palitra::runner_closed_error);
  REQUIRE_THROWS_AS(r.gather(flag(ran, probe(alive)), add(1, 1)), palitra::runner_closed_error);
  REQUIRE(alive == 0);
  REQUIRE_FALSE(ran);
  r.close(); // idempotent
  auto s = r.stats();
  REQUIRE(s.submitted == 0);
  palitra_test::require_quiet(s);
}

TEST_CASE("submit, spawn and post while the runner is closing throw runner_closed_error",
          "[close][misuse]") {
  watchdog w(30s);
  error_sink sink;
  std::atomic<int> rejected{0}, ran{0};
  palitra::runner r(with_sink(sink));
  // A spawned task that, once close() cancels it, tries to submit more work
  // from the loop thread itself.
  r.spawn([&]() -> palitra::task<void> {
    try {
      co_await palitra::sleep_for(10s);
    } catch (const palitra::cancelled_error&) {
      try {
        (void)r.submit(add(1, 1));
      } catch (const palitra::runner_closed_error&) {
        ++rejected;
      }
      try {
        r.spawn([&ran]() -> palitra::task<void> {
          ++ran;
          co_return;
        });
      } catch (const palitra::runner_closed_error&) {
        ++rejected;
      }
      try {
        r.post([&ran] { ++ran; });
      } catch (const palitra::runner_closed_error&) {
        ++rejected;
      }
      throw;
    }
  });
  sync(r);
  r.close();
  REQUIRE(rejected == 3);
  REQUIRE(ran == 0);
  REQUIRE(sink.count() == 0);
  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.submitted == 2);
  REQUIRE(s.cancelled == 1);
}

// ---------------------------------------------------------------------------
// stats
// ---------------------------------------------------------------------------

TEST_CASE("stats: submitted counts top-level calls; completed/failed/cancelled are exact for a "
          "known mix",
          "[stats]") {
  watchdog w(30s);
  error_sink sink;
  palitra::runner r(with_sink(sink));
  auto sleepy = []() -> palitra::task<int> {
    co_await palitra::sleep_for(10s);
    co_return 0;
  };
  auto vec = [](std::vector<palitra::task<int>> v) { return v; };
  auto make3 = [&] {
    std::vector<palitra::task<int>> v;
    v.push_back(add(1, 1));
    v.push_back(add(2, 2));
    v.push_back(add(3, 3));
    return v;
  };
  REQUIRE(r.run(add(1, 2)) == 3);                                        // 1 completed
  r.gather(add(1, 1), nothing(), add(2, 2));                             // 2 completed
  REQUIRE(r.gather(make3()).size() == 3);                                // 3 completed
  {
    std::vector<palitra::task<int>> v;
    v.push_back(add(1, 1));
    v.push_back(fail_with(1));
    REQUIRE(r.gather_settled(vec(std::move(v))).size() == 2);            // 4 completed
  }
  REQUIRE_THROWS_AS(r.run(fail_with(2)), custom_error);                  // 5 failed
  REQUIRE_THROWS_AS(r.gather(fail_with(3), sleepy()), custom_error);     // 6 failed
  REQUIRE_THROWS_AS(r.run(sleepy(), 1ms), palitra::timeout_error);       // 7 cancelled
  REQUIRE_THROWS_AS(r.gather(sleepy(), sleepy(), 1ms), palitra::timeout_error); // 8 cancelled
  {
    std::vector<palitra::task<int>> v;
    v.push_back(sleepy());
    REQUIRE_THROWS_AS(r.gather(std::move(v), 1ms), palitra::timeout_error); // 9 cancelled
  }
  auto f1 = r.submit(add(5, 5));                                         // 10 completed
  REQUIRE(f1.get() == 10);
  auto f2 = r.submit(sleepy());                                          // 11 cancelled
  sync(r);                                                               // 12 completed
  f2.cancel();
  REQUIRE_THROWS_AS(f2.get(), palitra::cancelled_error);
  auto f3 = r.submit(fail_with(4));                                      // 13 failed
  REQUIRE_THROWS_AS(f3.get(), custom_error);
  r.spawn(nothing());                                                    // 14 completed
  r.spawn([]() -> palitra::task<void> {                                  // 15 failed
    co_await palitra::yield();
    throw custom_error(6);
  }());
  settle(r, 15);                                                         // 16 completed
  REQUIRE(sink.count() == 1);

  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.submitted == 16);
  REQUIRE(s.completed == 8);
  REQUIRE(s.failed == 4);
  REQUIRE(s.cancelled == 4);

  // A spawned task in flight at close(): cancelled, not failed.
  std::atomic<int> alive{0};
  r.spawn(counted_void_sleeper(probe(alive)));                          // 17 cancelled
  sync(r);                                                               // 18 completed
  r.close();
  REQUIRE(alive == 0);
  REQUIRE(sink.count() == 1);
  s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.submitted == 18);
  REQUIRE(s.completed == 9);
  REQUIRE(s.failed == 4);
  REQUIRE(s.cancelled == 5);
}
