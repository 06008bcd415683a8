// The loop-local primitives: event, mutex (+ mutex_guard), semaphore,
// channel<T> (include/palitra/sync.hpp, channel.hpp; protocol W1-W5 / I1-I6
// in include/palitra/detail/waiter_list.hpp).
//
// Coroutines record what happened in an event_log (or plain counters) on the
// loop thread; the test thread reads them only after the blocking call that
// ran them returned. Waiters are started by when_all in argument order, and
// each runs to its first suspension before the next starts, so they queue
// in that order.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <palitra/channel.hpp>
#include <palitra/sync.hpp>

#include "support.hpp"

using namespace std::chrono_literals;
using palitra::task;
using palitra_test::event_log;
using palitra_test::watchdog;
using Catch::Matchers::Contains;

namespace {

std::string log_text(const event_log& log) {
  std::string s;
  for (const auto& e : log) s += "[" + e + "] ";
  return s;
}

bool has(const event_log& log, const std::string& e) {
  return std::find(log.begin(), log.end(), e) != log.end();
}

task<void> barrier() { co_await palitra::yield(); }

task<void> yields(int n) {
  for (int i = 0; i < n; ++i) co_await palitra::yield();
}

/// Runs `t`, logging "<name> cancelled" if it throws cancelled_error and
/// "<name> timed out" if it throws timeout_error (both swallowed).
task<void> logged(task<void> t, event_log& log, std::string name) {
  try {
    co_await std::move(t);
  } catch (const palitra::timeout_error&) {
    log.push_back(name + " timed out");
  } catch (const palitra::cancelled_error&) {
    log.push_back(name + " cancelled");
    throw;
  }
}

task<void> timed(task<void> t, event_log& log, std::string name) {
  co_await logged(palitra::with_timeout(std::move(t), 2ms), log, std::move(name));
}

task<void> ev_wait(palitra::event& ev, event_log& log, std::string name) {
  co_await ev.wait();
  log.push_back(name + " woke");
}

task<void> lock_log(palitra::mutex& m, event_log& log, std::string name, bool unlock = true) {
  co_await m.lock();
  log.push_back(name + " locked");
  if (unlock) m.unlock();
}

task<void> acquire_log(palitra::semaphore& s, event_log& log, std::string name) {
  co_await s.acquire();
  log.push_back(name + " acquired");
}

task<void> recv_log(palitra::channel<int>& ch, event_log& log, std::string name) {
  std::optional<int> v = co_await ch.recv();
  log.push_back(name + " got " + (v ? std::to_string(*v) : std::string("nullopt")));
}

task<void> send_log(palitra::channel<int>& ch, event_log& log, std::string name, int v) {
  try {
    co_await ch.send(v);
  } catch (const palitra::channel_closed_error&) {
    log.push_back(name + " closed");
    co_return;
  }
  log.push_back(name + " sent " + std::to_string(v));
}

/// After `n` turns of the loop, log `what` and run `f`.
template <class F> task<void> after(int n, event_log& log, std::string what, F f) {
  co_await yields(n);
  log.push_back(what);
  f();
}

} // namespace

// ---------------------------------------------------------------------------
// FIFO order and the non-waiting members
// ---------------------------------------------------------------------------

TEST_CASE("sync: event: set wakes every waiter FIFO, later, not inside set()", "[sync]") {
  watchdog w(30s);
  palitra::runner r;
  palitra::event ev;
  event_log log;
  r.run([&]() -> task<void> {
    co_await palitra::when_all(ev_wait(ev, log, "w0"), ev_wait(ev, log, "w1"),
                               ev_wait(ev, log, "w2"), after(1, log, "set", [&] {
                                 ev.set();
                                 log.push_back("set returned");
                                 ev.clear(); // woken waiters still wake (W2 happened)
                               }));
  });
  INFO(log_text(log));
  REQUIRE(log == event_log{"set", "set returned", "w0 woke", "w1 woke", "w2 woke"});
  REQUIRE_FALSE(ev.is_set());

  log.clear();
  r.run([&]() -> task<void> {
    ev.set();
    ev.set(); // idempotent
    co_await ev.wait(); // set: returns at once
    log.push_back("passed");
    ev.clear();
    co_await palitra::when_all(ev_wait(ev, log, "again"), after(2, log, "set", [&] { ev.set(); }));
  });
  REQUIRE(log == event_log{"passed", "set", "again woke"});
  REQUIRE(ev.is_set());
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}

TEST_CASE("sync: mutex: FIFO, try_lock, unlock reserves the lock for the front waiter",
          "[sync]") {
  watchdog w(30s);
  palitra::runner r;
  palitra::mutex m;
  event_log log;
  bool barged = true;
  r.run([&]() -> task<void> {
    REQUIRE(m.try_lock());
    REQUIRE_FALSE(m.try_lock());
    co_await palitra::when_all(lock_log(m, log, "a"), lock_log(m, log, "b"),
                               lock_log(m, log, "c"), after(1, log, "unlock", [&] {
                                 m.unlock();
                                 barged = m.try_lock(); // I2: reserved for a
                               }));
  });
  INFO(log_text(log));
  REQUIRE(log == event_log{"unlock", "a locked", "b locked", "c locked"});
  REQUIRE_FALSE(barged);
  REQUIRE_FALSE(m.locked());
  REQUIRE_THROWS_WITH(r.run([&]() -> task<void> {
                        m.unlock();
                        co_return;
                      }),
                      Contains("not locked"));
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}

TEST_CASE("sync: mutex: scoped() returns a move-only guard that unlocks", "[sync]") {
  static_assert(!std::is_copy_constructible_v<palitra::mutex_guard>);
  static_assert(std::is_nothrow_move_constructible_v<palitra::mutex_guard>);
  watchdog w(30s);
  palitra::runner r;
  palitra::mutex m;
  event_log log;
  r.run([&]() -> task<void> {
    {
      palitra::mutex_guard g = co_await m.scoped();
      REQUIRE(g.owns_lock());
      REQUIRE(m.locked());
      palitra::mutex_guard g2 = std::move(g);
      REQUIRE_FALSE(g.owns_lock());
      REQUIRE(m.locked());
    }
    REQUIRE_FALSE(m.locked());
    auto holder = [&]() -> task<void> {
      auto g = co_await m.scoped();
      log.push_back("holder in");
      co_await yields(3);
      log.push_back("holder out");
    };
    co_await palitra::when_all(holder(), lock_log(m, log, "next"));
    palitra::mutex_guard g = co_await m.scoped();
    g.unlock();
    g.unlock(); // idempotent
    REQUIRE_FALSE(m.locked());
  });
  REQUIRE(log == event_log{"holder in", "holder out", "next locked"});
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}

TEST_CASE("sync: semaphore: FIFO, try_acquire, release(n) wakes n waiters", "[sync]") {
  watchdog w(30s);
  palitra::runner r;
  palitra::semaphore s(0);
  event_log log;
  std::ptrdiff_t after_release3 = -1, after_release5 = -1;
  r.run([&]() -> task<void> {
    REQUIRE_FALSE(s.try_acquire());
    std::vector<task<void>> ts;
    for (int i = 0; i < 5; ++i) ts.push_back(acquire_log(s, log, "w" + std::to_string(i)));
    ts.push_back(after(1, log, "release 3", [&] {
      s.release(3);
      after_release3 = s.available(); // all 3 reserved for w0..w2
    }));
    ts.push_back(after(4, log, "release 5", [&] {
      s.release(5);
      after_release5 = s.available(); // 2 to w3, w4; 3 left
    }));
    co_await palitra::when_all(std::move(ts));
    REQUIRE(s.try_acquire());
    REQUIRE(s.available() == 2);
  });
  INFO(log_text(log));
  REQUIRE(log == event_log{"release 3", "w0 acquired", "w1 acquired", "w2 acquired",
                           "release 5", "w3 acquired", "w4 acquired"});
  REQUIRE(after_release3 == 0);
  REQUIRE(after_release5 == 3);
  REQUIRE_THROWS_AS(palitra::semaphore(-1), palitra::error);
  REQUIRE_THROWS_WITH(r.run([&]() -> task<void> {
                        s.release(-1);
                        co_return;
                      }),
                      Contains("negative"));
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}

TEST_CASE("sync: channel: FIFO among senders and among receivers, capacity", "[sync]") {
  watchdog w(30s);
  REQUIRE_THROWS_WITH(palitra::channel<int>(0), Contains("capacity"));
  palitra::runner r;
  palitra::channel<int> ch(2);
  event_log log;
  std::size_t full_size = 0;
  r.run([&]() -> task<void> {
    co_await ch.send(1);
    co_await ch.send(2); // fits: capacity 2
    full_size = ch.size();
    auto drain = [&]() -> task<void> {
      for (int i = 0; i < 5; ++i) co_await recv_log(ch, log, "r");
    };
    co_await palitra::when_all(send_log(ch, log, "s3", 3), send_log(ch, log, "s4", 4),
                               send_log(ch, log, "s5", 5), drain());
  });
  INFO(log_text(log));
  REQUIRE(full_size == 2);
  // Values leave in send order; the blocked senders get their slots FIFO.
  event_log got;
  for (const auto& e : log)
    if (e.rfind("r got", 0) == 0) got.push_back(e);
  REQUIRE(got == event_log{"r got 1", "r got 2", "r got 3", "r got 4", "r got 5"});
  REQUIRE(log.size() == 8);
  REQUIRE(ch.size() == 0);

  // Receivers waiting on an empty channel are served FIFO.
  log.clear();
  r.run([&]() -> task<void> {
    co_await palitra::when_all(recv_log(ch, log, "a"), recv_log(ch, log, "b"),
                               recv_log(ch, log, "c"), [&]() -> task<void> {
                                 co_await ch.send(10);
                                 co_await ch.send(20);
                                 co_await ch.send(30);
                               }());
  });
  REQUIRE(log == event_log{"a got 10", "b got 20", "c got 30"});

  // Move-only values.
  palitra::channel<std::unique_ptr<int>> boxes(1);
  auto v = r.run([&]() -> task<int> {
    co_await boxes.send(std::make_unique<int>(7));
    auto b = co_await boxes.recv();
    co_return **b;
  });
  REQUIRE(v == 7);
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}

TEST_CASE("sync: channel: close wakes every waiter, receivers drain then get nullopt, send throws",
          "[sync]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  palitra::channel<int> ch(1);
  r.run([&]() -> task<void> {
    co_await ch.send(1);
    // s2 waits (full); close: s2 throws, the buffered 1 is drained first.
    co_await palitra::when_all(send_log(ch, log, "s2", 2), after(1, log, "close", [&] {
                                 ch.close();
                                 ch.close(); // idempotent
                               }));
    REQUIRE(ch.closed());
    co_await recv_log(ch, log, "r");
    co_await recv_log(ch, log, "r");
    co_await send_log(ch, log, "late", 3);
  });
  INFO(log_text(log));
  REQUIRE(log == event_log{"close", "s2 closed", "r got 1", "r got nullopt", "late closed"});

  // Receivers pending on an empty channel get nullopt at close.
  palitra::channel<int> ch2(4);
  log.clear();
  r.run([&]() -> task<void> {
    co_await palitra::when_all(recv_log(ch2, log, "a"), recv_log(ch2, log, "b"),
                               after(1, log, "close", [&] { ch2.close(); }));
  });
  REQUIRE(log == event_log{"close", "a got nullopt", "b got nullopt"});
  REQUIRE_THROWS_AS(r.run(ch2.send(1)), palitra::channel_closed_error);
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}

// ---------------------------------------------------------------------------
// Cancellation leaves no trace (I4)
// ---------------------------------------------------------------------------

TEST_CASE("sync: a waiter timed out by with_timeout leaves no trace", "[sync][cancel]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;

  palitra::mutex m;
  r.run([&]() -> task<void> {
    co_await m.lock();
    co_await palitra::when_all(timed(lock_log(m, log, "A"), log, "A"), lock_log(m, log, "B"),
                               [&]() -> task<void> {
                                 co_await palitra::sleep_for(20ms);
                                 log.push_back("unlock");
                                 m.unlock();
                               }());
  });
  INFO(log_text(log));
  REQUIRE(log == event_log{"A timed out", "unlock", "B locked"});
  REQUIRE_FALSE(m.locked());

  palitra::semaphore s(0);
  log.clear();
  r.run([&]() -> task<void> {
    co_await palitra::when_all(timed(acquire_log(s, log, "A"), log, "A"), acquire_log(s, log, "B"),
                               [&]() -> task<void> {
                                 co_await palitra::sleep_for(20ms);
                                 s.release(1);
                               }());
  });
  REQUIRE(log == event_log{"A timed out", "B acquired"});
  REQUIRE(s.available() == 0); // exact: the one unit went to B

  palitra::channel<int> ch(1);
  log.clear();
  r.run([&]() -> task<void> {
    co_await palitra::when_all(timed(recv_log(ch, log, "A"), log, "A"), recv_log(ch, log, "B"),
                               [&]() -> task<void> {
                                 co_await palitra::sleep_for(20ms);
                                 co_await ch.send(7);
                               }());
    // A blocked sender timed out never delivers.
    co_await ch.send(1);
    co_await palitra::when_all(timed(send_log(ch, log, "S2", 2), log, "S2"),
                               send_log(ch, log, "S3", 3), [&]() -> task<void> {
                                 co_await palitra::sleep_for(20ms);
                                 co_await recv_log(ch, log, "R");
                                 co_await recv_log(ch, log, "R");
                               }());
  });
  REQUIRE(log == event_log{"A timed out", "B got 7", "S2 timed out", "R got 1", "S3 sent 3",
                           "R got 3"});
  REQUIRE(ch.size() == 0);

  palitra::event ev;
  log.clear();
  r.run([&]() -> task<void> {
    co_await palitra::when_all(timed(ev_wait(ev, log, "A"), log, "A"), ev_wait(ev, log, "B"),
                               [&]() -> task<void> {
                                 co_await palitra::sleep_for(20ms);
                                 ev.set();
                               }());
  });
  REQUIRE(log == event_log{"A timed out", "B woke"});
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}

TEST_CASE("sync: a waiter granted, then cancelled before it runs, hands the grant on (W4)",
          "[sync][cancel]") {
  // when_any: the releasing sibling finishes right after its release()
  // granted A, so A's chain is cancelled between its grant and its resume.
  watchdog w(30s);
  palitra::runner r;
  event_log log;

  palitra::semaphore s(0);
  r.run([&]() -> task<void> {
    co_await palitra::when_all(
        palitra::when_any(logged(acquire_log(s, log, "A"), log, "A"),
                          after(1, log, "release", [&] { s.release(1); })),
        acquire_log(s, log, "B"));
  });
  INFO(log_text(log));
  REQUIRE(log == event_log{"release", "A cancelled", "B acquired"});
  REQUIRE(s.available() == 0);

  palitra::mutex m;
  log.clear();
  r.run([&]() -> task<void> {
    co_await m.lock();
    co_await palitra::when_all(
        palitra::when_any(logged(lock_log(m, log, "A", false), log, "A"),
                          after(1, log, "unlock", [&] { m.unlock(); })),
        lock_log(m, log, "B"));
  });
  REQUIRE(log == event_log{"unlock", "A cancelled", "B locked"});
  REQUIRE_FALSE(m.locked());

  palitra::channel<int> ch(1);
  log.clear();
  r.run([&]() -> task<void> {
    co_await palitra::when_all(
        palitra::when_any(logged(recv_log(ch, log, "A"), log, "A"), [&]() -> task<void> {
          co_await yields(1);
          co_await ch.send(5);
        }()),
        recv_log(ch, log, "B"));
    // A granted sender cancelled before it runs never delivers.
    co_await ch.send(1);
    co_await palitra::when_all(
        palitra::when_any(logged(send_log(ch, log, "S2", 2), log, "S2"), [&]() -> task<void> {
          co_await yields(1);
          co_await recv_log(ch, log, "R");
        }()),
        send_log(ch, log, "S3", 3));
    co_await recv_log(ch, log, "R");
  });
  REQUIRE(log == event_log{"A cancelled", "B got 5", "R got 1", "S2 cancelled", "S3 sent 3",
                           "R got 3"});
  REQUIRE(ch.size() == 0);
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}

TEST_CASE("sync: a waiter cancelled by future::cancel leaves no trace", "[sync][cancel]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  palitra::semaphore s(0);
  auto fa = r.submit(acquire_log(s, log, "A"));
  auto fb = r.submit(acquire_log(s, log, "B"));
  r.run(barrier()); // both queued, A first

  // The loop is busy in a post when the cancel is requested: the request is
  // visible (T1) but not delivered when release() runs, so the unit skips A
  // at the grant (W2) and goes to B.
  std::atomic<bool> in_post{false}, go{false};
  r.post([&] {
    in_post.store(true);
    while (!go.load()) std::this_thread::yield();
    s.release(1);
  });
  while (!in_post.load()) std::this_thread::yield();
  fa.cancel();
  go.store(true);
  REQUIRE_THROWS_AS(fa.get(), palitra::cancelled_error);
  fb.get();
  REQUIRE(log == event_log{"B acquired"});

  // A queued waiter cancelled outright: the hook unlinks it (W3).
  palitra::mutex m;
  r.run(m.lock());
  auto fc = r.submit(lock_log(m, log, "C"));
  auto fd = r.submit(lock_log(m, log, "D"));
  r.run(barrier());
  fc.cancel();
  REQUIRE_THROWS_AS(fc.get(), palitra::cancelled_error);
  r.run([&]() -> task<void> {
    m.unlock();
    co_return;
  });
  fd.get();
  REQUIRE(log == event_log{"B acquired", "D locked"});
  auto st = palitra_test::settled_stats(r);
  palitra_test::require_quiet(st);
  REQUIRE(st.cancelled == 2);
  REQUIRE(r.run([&]() -> task<bool> { co_return s.available() == 0 && !m.locked(); }()));
}

TEST_CASE("sync: waiters cancelled by runner close() leave no trace", "[sync][cancel]") {
  watchdog w(30s);
  event_log log;
  palitra::mutex m;
  palitra::semaphore s(0);
  palitra::event ev;
  palitra::channel<int> ch(1);
  {
    palitra::runner r;
    r.run(m.lock());
    r.run(ch.send(1));
    r.spawn(logged(lock_log(m, log, "m"), log, "m"));
    r.spawn(logged(acquire_log(s, log, "s"), log, "s"));
    r.spawn(logged(ev_wait(ev, log, "ev"), log, "ev"));
    r.spawn(logged(send_log(ch, log, "ch", 2), log, "ch"));
    r.run(barrier());
    r.close();
    auto st = r.stats();
    palitra_test::require_quiet(st);
    REQUIRE(st.cancelled == 4);
  }
  INFO(log_text(log));
  REQUIRE(log.size() == 4);
  for (const char* n : {"m", "s", "ev", "ch"}) REQUIRE(has(log, std::string(n) + " cancelled"));
  // Nothing was granted to them: the objects are as before, and they may be
  // destroyed on this thread (no waiter is left).
  REQUIRE(m.locked());
  REQUIRE(s.available() == 0);
  REQUIRE(ch.size() == 1);
}

// ---------------------------------------------------------------------------
// Misuse
// ---------------------------------------------------------------------------

TEST_CASE("sync: misuse: another runner's loop, a sync thread, destruction with waiters",
          "[sync][misuse]") {
  watchdog w(30s);
  palitra::runner r1, r2;
  palitra::mutex m;
  palitra::event ev;
  palitra::semaphore s(1);
  palitra::channel<int> ch(1);

  // Never used: off the loop is still refused (nothing to bind to).
  REQUIRE_THROWS_WITH(ev.set(), Contains("palitra::event::set") && Contains("off the loop"));

  r1.run(m.lock()); // binds m to r1's loop
  r1.run([&]() -> task<void> {
    ev.set();
    co_await s.acquire();
    co_await ch.send(1);
  });
  REQUIRE_THROWS_WITH(r2.run(m.lock()), Contains("palitra::mutex::lock") &&
                                            Contains("another runner"));
  REQUIRE_THROWS_WITH(r2.run(ev.wait()), Contains("another runner"));
  REQUIRE_THROWS_WITH(r2.run(s.acquire()), Contains("palitra::semaphore"));
  REQUIRE_THROWS_WITH(r2.run(ch.recv()), Contains("palitra::channel::recv"));
  REQUIRE_THROWS_WITH(ev.set(), Contains("off the loop"));
  REQUIRE_THROWS_WITH(ev.clear(), Contains("off the loop"));
  REQUIRE_THROWS_WITH(m.unlock(), Contains("palitra::mutex::unlock"));
  REQUIRE_THROWS_WITH(m.try_lock(), Contains("off the loop"));
  REQUIRE_THROWS_WITH(s.release(), Contains("palitra::semaphore::release"));
  REQUIRE_THROWS_WITH(ch.close(), Contains("palitra::channel::close"));
  // The objects still work on their own loop.
  r1.run([&]() -> task<void> {
    m.unlock();
    s.release();
    auto v = co_await ch.recv();
    REQUIRE(v == 1);
  });

  // Destroyed on its loop with waiters (queued and granted): each waiter's
  // wait throws palitra::error; nothing touches the freed object.
  auto outcomes = r1.run([&]() -> task<std::vector<palitra::outcome<void>>> {
    auto e = std::make_unique<palitra::event>();
    auto mx = std::make_unique<palitra::mutex>();
    co_await mx->lock();
    std::vector<task<void>> ts;
    ts.push_back(e->wait());
    ts.push_back(mx->lock()); // granted by unlock(), destroyed before it runs
    ts.push_back(mx->lock()); // still queued
    auto destroy = [&]() -> task<void> { // named: the closure outlives the task
      co_await palitra::yield();
      e.reset();
      mx->unlock();
      mx.reset();
    };
    ts.push_back(destroy());
    co_return co_await palitra::when_all_settled(std::move(ts));
  }());
  REQUIRE(outcomes.size() == 4);
  for (std::size_t i = 0; i < 3; ++i) {
    REQUIRE_FALSE(outcomes[i].has_value());
    REQUIRE_THROWS_WITH(std::rethrow_exception(outcomes[i].error()), Contains("destroyed"));
  }
  REQUIRE(outcomes[3].has_value());
  palitra_test::require_quiet(palitra_test::settled_stats(r1));
  palitra_test::require_quiet(palitra_test::settled_stats(r2));
}

// ---------------------------------------------------------------------------
// Stress
// ---------------------------------------------------------------------------

namespace {

struct stress_state {
  palitra::mutex m;
  int inside = 0;
  int max_inside = 0;
  int entries = 0;
  int timeouts = 0;
  int last_entered = -1;
  bool fifo = true;
  std::vector<char> entered;
};

task<void> section(stress_state& s, int i) {
  auto g = co_await s.m.scoped();
  s.max_inside = std::max(s.max_inside, ++s.inside);
  s.fifo = s.fifo && i > s.last_entered; // I3 survives any cancellation
  s.last_entered = i;
  s.entered[static_cast<std::size_t>(i)] = 1;
  ++s.entries;
  struct leave {
    stress_state& s;
    ~leave() { --s.inside; }
  } l{s};
  co_await palitra::yield(); // cancellable inside: the guard unlocks on unwind
}

task<void> contender(stress_state& s, int i, int timeout_us) {
  if (timeout_us < 0) {
    co_await section(s, i);
    co_return;
  }
  try {
    co_await palitra::with_timeout(section(s, i), std::chrono::microseconds(timeout_us));
  } catch (const palitra::timeout_error&) {
    ++s.timeouts;
  }
}

} // namespace

TEST_CASE("sync: stress: 10,000 waiters on one mutex with random cancellations",
          "[sync][stress]") {
  watchdog w(120s);
  const auto seed = static_cast<unsigned>(std::random_device{}());
  std::printf("sync stress: seed %u, 10000 waiters, 1/3 with a 0-3000 us timeout\n", seed);
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  constexpr int n = 10000;
  palitra::runner r;
  stress_state s;
  s.entered.assign(n, 0);
  std::vector<int> timeout_us(n);
  for (auto& t : timeout_us) t = rng() % 3 == 0 ? static_cast<int>(rng() % 3001) : -1;
  r.run([&]() -> task<void> {
    co_await s.m.lock(); // everyone queues behind the holder
    std::vector<task<void>> ts;
    ts.reserve(n + 1);
    for (int i = 0; i < n; ++i) ts.push_back(contender(s, i, timeout_us[static_cast<std::size_t>(i)]));
    auto holder = [&]() -> task<void> { // named: the closure outlives the task
      co_await palitra::sleep_for(1ms);
      s.m.unlock();
    };
    ts.push_back(holder());
    co_await palitra::when_all(std::move(ts));
  });
  REQUIRE(s.max_inside == 1);
  REQUIRE(s.inside == 0);
  REQUIRE(s.fifo);
  REQUIRE_FALSE(s.m.locked());
  int untimed_missing = 0;
  for (int i = 0; i < n; ++i)
    if (timeout_us[static_cast<std::size_t>(i)] < 0 && !s.entered[static_cast<std::size_t>(i)])
      ++untimed_missing;
  REQUIRE(untimed_missing == 0);
  REQUIRE(s.entries + s.timeouts >= n); // a timed-out one may also have entered
  std::printf("sync stress: %d entries, %d timeouts\n", s.entries, s.timeouts);
  REQUIRE(r.run([&]() -> task<bool> { co_return s.m.try_lock(); }()));
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}
