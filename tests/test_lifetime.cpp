// palitra tests — when a call's frame dies, what outlives a runner, and
// the call entry points that must not read a runner after their push
// (DESIGN.md §2 "Details", §3 item 3, §4; review 2026-12-07 A1-A4, A6).
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "support.hpp"

#include "runtime/loop.hpp" // white-box: wait_hints_pool_size

using namespace std::chrono_literals;
using palitra_test::probe;
using palitra_test::require_quiet;
using palitra_test::watchdog;

namespace {

palitra::task<int> deref_later(std::unique_ptr<int> p) {
  co_await palitra::yield();
  co_return *p * 2;
}

palitra::task<int> quick(probe p, int v) {
  (void)p;
  co_return v;
}

palitra::task<int> long_nap(probe p) {
  (void)p;
  co_await palitra::sleep_for(30s); // only close() or a cancel ends this
  co_return 1;
}

} // namespace

TEST_CASE("run(f, args...): the stored arguments reach the callable as rvalues",
          "[lifetime][run]") {
  watchdog w(30s);
  palitra::runner r;
  // A callable taking a move-only argument by value (as std::thread allows).
  auto f = [](std::unique_ptr<int> p) -> palitra::task<int> { co_return *p + 1; };
  REQUIRE(r.run(f, std::make_unique<int>(5)) == 6);
  // The argument lives in the root frame for the coroutine's whole life.
  REQUIRE(r.run(&deref_later, std::make_unique<int>(21)) == 42);
  REQUIRE(palitra::run(f, std::make_unique<int>(1)) == 2);
  auto fut = r.submit([](std::unique_ptr<int> p) -> palitra::task<int> { co_return *p; }(
      std::make_unique<int>(7)));
  REQUIRE(fut.get() == 7);
  require_quiet(palitra_test::settled_stats(r));
}

TEST_CASE("submit: the task's frame, its parameters included, dies when its coroutine ends",
          "[lifetime][future]") {
  // The future keeps only the result (std::async destroys its callable and
  // arguments when the task ends, not when the future is read).
  watchdog w(30s);
  palitra::runner r;
  std::atomic<int> alive{0};
  auto f = r.submit(quick(probe(alive), 9));
  REQUIRE(f.wait_for(10s));
  REQUIRE(alive.load() == 0); // ended, not yet read
  REQUIRE(f.get() == 9);

  // The same for a task that failed, and for a runner closed before get().
  auto g = r.submit([](probe p) -> palitra::task<int> {
    (void)p;
    throw palitra_test::custom_error(3);
    co_return 0;
  }(probe(alive)));
  REQUIRE(g.wait_for(10s));
  REQUIRE(alive.load() == 0);
  REQUIRE_THROWS_AS(g.get(), palitra_test::custom_error);

  auto h = r.submit(long_nap(probe(alive)));
  REQUIRE(alive.load() == 1);
  r.close();
  REQUIRE(alive.load() == 0); // before anyone reads h
  REQUIRE_THROWS_AS(h.get(), palitra::runner_closed_error);
}

TEST_CASE("submit: a result whose move constructor throws fails the call, it does not abort",
          "[lifetime][future]") {
  struct fragile {
    int v;
    explicit fragile(int x) : v(x) {}
    fragile(fragile&& o) : v(o.v) {
      if (v < 0) throw palitra_test::custom_error(v);
    }
  };
  watchdog w(30s);
  palitra::runner r;
  auto f = r.submit([]() -> palitra::task<fragile> { co_return fragile(-4); }());
  REQUIRE_THROWS_AS(f.get(), palitra_test::custom_error);
  const auto s = palitra_test::settled_stats(r);
  REQUIRE(s.failed == 1);
  require_quiet(s);
}

TEST_CASE("close: when close() returns, no frame of any call is alive, with 8 closers at once",
          "[lifetime][close]") {
  // Callers released by close() used to destroy their own frames after
  // their wake, so a concurrent close() could return while a frame's
  // destructors still ran (DESIGN.md §4). The loop now destroys every frame
  // before it releases the caller; repeated to give the old race its chances.
  watchdog w(120s);
  constexpr int rounds = 30;
  constexpr int callers = 6;
  constexpr int closers = 8;
  for (int round = 0; round < rounds; ++round) {
    palitra::runner r;
    std::atomic<int> alive{0}, started{0}, seen_alive{0};
    std::vector<std::thread> ts;
    for (int i = 0; i < callers; ++i)
      ts.emplace_back([&, i] {
        // Made first: the probe temporary of the argument list dies here,
        // so `alive` counts only the copy inside the frame.
        auto t = long_nap(probe(alive));
        started.fetch_add(1);
        try {
          if (i % 2 == 0) {
            (void)r.run(std::move(t));
          } else {
            auto f = r.submit(std::move(t));
            (void)f.get();
          }
        } catch (const palitra::runner_closed_error&) {
        }
      });
    while (started.load() < callers || r.stats().in_flight < static_cast<unsigned>(callers))
      std::this_thread::sleep_for(1ms);
    std::vector<std::thread> cs;
    for (int i = 0; i < closers; ++i)
      cs.emplace_back([&] {
        r.close();
        if (alive.load() != 0) seen_alive.fetch_add(1);
      });
    for (auto& t : cs) t.join();
    for (auto& t : ts) t.join();
    INFO("round " << round);
    REQUIRE(seen_alive.load() == 0);
    REQUIRE(alive.load() == 0);
  }
}

TEST_CASE("future: get() of a ready future on another runner's loop is not a reentrancy",
          "[lifetime][future][misuse]") {
  // The reentrancy check compares runner ids: a destroyed runner's address
  // reused by the next one (same size class, LIFO free lists) used to make
  // this get() throw reentrancy_error on the new runner's loop.
  watchdog w(30s);
  std::atomic<int> alive{0};
  for (int i = 0; i < 20; ++i) {
    palitra::future<int> f;
    {
      palitra::runner r1;
      f = r1.submit(quick(probe(alive), 11));
      REQUIRE(f.wait_for(10s));
    }
    palitra::runner r2;
    auto on_loop = [&]() -> palitra::task<int> { co_return f.get(); };
    REQUIRE(r2.run(on_loop) == 11);
  }
}

TEST_CASE("cancel_token: cancels from another thread while the owner waits in get()",
          "[lifetime][future][cancel]") {
  watchdog w(30s);
  palitra::runner r;
  std::atomic<int> alive{0};
  auto f = r.submit(long_nap(probe(alive)));
  const palitra::cancel_token tok = f.get_cancel_token();
  REQUIRE(tok);
  std::thread watcher([tok] {
    std::this_thread::sleep_for(20ms); // the owner is in get() by now, usually
    tok.cancel();
    tok.cancel(); // idempotent
  });
  REQUIRE_THROWS_AS(f.get(), palitra::cancelled_error);
  watcher.join();
  REQUIRE(alive.load() == 0);
  tok.cancel(); // after get(): the future let go, nothing happens
  palitra::cancel_token empty;
  REQUIRE_FALSE(empty);
  empty.cancel();
  const auto s = palitra_test::settled_stats(r);
  REQUIRE(s.cancelled == 1);
  require_quiet(s);
}

TEST_CASE("cancel_token: races with get(), ~future and the task's own end stay safe",
          "[lifetime][future][cancel]") {
  // ASan/TSan catch a token touching a freed op; the counters must balance.
  watchdog w(60s);
  palitra::runner r;
  std::atomic<int> alive{0};
  for (int i = 0; i < 300; ++i) {
    auto f = r.submit(i % 3 == 0 ? quick(probe(alive), i) : long_nap(probe(alive)));
    palitra::cancel_token tok = f.get_cancel_token();
    std::thread t([tok] { tok.cancel(); });
    if (i % 2 == 0) {
      try {
        (void)f.get();
      } catch (const palitra::cancelled_error&) {
      }
    } else {
      f = palitra::future<int>(); // ~future: cancel and wait
    }
    t.join();
  }
  REQUIRE(alive.load() == 0);
  require_quiet(palitra_test::settled_stats(r));
}

TEST_CASE("wait hints: every live runner keeps its own caller_spin, past 256 runners",
          "[lifetime][spin]") {
  // A fixed pool of 256 blocks used to make later runners share one
  // overflow block, whose ceiling the last of them overwrote.
  watchdog w(120s);
  constexpr int n = 300;
  std::vector<std::unique_ptr<palitra::runner>> rs;
  rs.reserve(n);
  for (int i = 0; i < n; ++i) {
    palitra::runner_options o;
    o.caller_spin = i % 2 == 0 ? 0ns : 40us;
    rs.push_back(std::make_unique<palitra::runner>(o));
  }
  for (int i = 0; i < n; ++i) {
    INFO("runner " << i);
    REQUIRE(rs[i]->stats().caller_spin_budget == (i % 2 == 0 ? 0ns : 40us));
  }
  // The pool made one block per runner, and closing gives them back: a new
  // batch of the same size reuses them.
  const std::size_t pool = palitra::detail::wait_hints_pool_size();
  REQUIRE(pool >= static_cast<std::size_t>(n));
  rs.clear();
  for (int i = 0; i < n; ++i) rs.push_back(std::make_unique<palitra::runner>());
  REQUIRE(palitra::detail::wait_hints_pool_size() == pool);
}

TEST_CASE("wait hints: shutting the global runner down and recreating it reuses one block",
          "[lifetime][global]") {
  // Retired global runners are never deleted (references stay valid), but
  // their close() gives the hint block back: cycles do not grow the pool.
  watchdog w(60s);
  auto one = []() -> palitra::task<int> { co_return 1; };
  REQUIRE(palitra::run(one) == 1);
  palitra::shutdown_global_runner();
  REQUIRE(palitra::run(one) == 1);
  const std::size_t pool = palitra::detail::wait_hints_pool_size();
  for (int i = 0; i < 300; ++i) {
    palitra::shutdown_global_runner();
    REQUIRE(palitra::run(one) == 1);
  }
  REQUIRE(palitra::detail::wait_hints_pool_size() == pool);
  // A closed runner reports its own last budget, not the next owner's. No
  // call runs on `old`, so its budget stays at its ceiling (no adaptation).
  palitra::runner_options a, b;
  a.caller_spin = 40us;
  b.caller_spin = 0ns;
  palitra::runner old(a);
  old.close();
  palitra::runner fresh(b); // likely takes the block `old` gave back
  REQUIRE(old.stats().caller_spin_budget == 40us);
  REQUIRE(fresh.stats().caller_spin_budget == 0ns);
}
