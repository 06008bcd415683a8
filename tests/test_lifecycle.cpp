// Runner lifecycle (DESIGN.md §4): close() under load, idempotent and
// concurrent close(), the destructor, fds, the global runner (lazy creation,
// shutdown, re-creation), fork(), and exit().
//
// fork()/exit() scenarios run in child processes. Exit scenarios re-execute
// this binary on a hidden "[.child]" test (fork + execve), so the child is a
// fresh process: its own atexit handler is registered before any palitra use
// whatever the parent did, and ThreadSanitizer is happy (no thread is started
// between fork and exec). Plain fork() children skip under TSan: it kills a
// child of a multi-threaded parent that starts threads (research/reliability.md
// (c) c2.6).
#include <dirent.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

#include <palitra/config.hpp>

extern char** environ;

using namespace std::chrono_literals;
using palitra_test::watchdog;
using steady = std::chrono::steady_clock;

namespace {

palitra::task<int> add(int a, int b) { co_return a + b; }

palitra::task<int> sleep_then(std::chrono::milliseconds d, int v) {
  co_await palitra::sleep_for(d);
  co_return v;
}

/// Counts live instances (a frame parameter that records its destruction).
struct tracker {
  static inline std::atomic<int> alive{0};
  tracker() { ++alive; }
  tracker(const tracker&) { ++alive; }
  tracker(tracker&&) noexcept { ++alive; }
  ~tracker() { --alive; }
};

/// Poll `pred` for up to `limit` (scaled); true once it holds.
template <class P> bool eventually(P pred, std::chrono::milliseconds limit = 5000ms) {
  const auto until = steady::now() + limit * palitra_test::watchdog::scale();
  while (!pred()) {
    if (steady::now() >= until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

/// Wait until the runner has `n` calls in flight.
void wait_in_flight(palitra::runner& r, std::uint64_t n) {
  INFO("waiting for " << n << " calls in flight");
  REQUIRE(eventually([&] { return r.stats().in_flight >= n; }));
}

/// True if a thread of this process has the name `name` (its comm).
bool thread_named(const std::string& name) {
  bool found = false;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
      std::string n;
      if (std::getline(comm, n) && n == name) found = true;
    }
    closedir(d);
  }
  return found;
}

/// The loop thread is gone (joined threads may linger in /proc for a moment).
bool thread_gone(const std::string& name) {
  return eventually([&] { return !thread_named(name); }, 2000ms);
}

constexpr int child_timeout = 128; // the exit status we report for a hung child

/// waitpid with a timeout: the child's exit status, or child_timeout (after
/// SIGKILL) if it did not end in time, or 128 + signal if it was killed.
int wait_child(pid_t pid, std::chrono::seconds limit = 30s) {
  const auto until = steady::now() + limit * palitra_test::watchdog::scale();
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      continue;
    }
    if (r < 0 && errno != EINTR) return -1;
    if (steady::now() >= until) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      std::fprintf(stderr, "child %d did not end within %llds: killed\n", int(pid),
                   static_cast<long long>(limit.count()));
      return child_timeout;
    }
    std::this_thread::sleep_for(2ms);
  }
}

/// Runs the hidden test `name` of this binary in a fresh child process
/// (fork + execve) and returns its exit status (see wait_child).
int run_child_test(const char* name, std::chrono::seconds limit = 30s) {
  // Everything execve needs is built before fork(): after it, only
  // async-signal-safe calls.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::strncmp(*e, "PALITRA_LIFECYCLE_CHILD=", 24) != 0) env_strings.emplace_back(*e);
  env_strings.emplace_back("PALITRA_LIFECYCLE_CHILD=1");
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string self = "palitra_tests", spec = name;
  char* argv[] = {self.data(), spec.data(), nullptr};
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    execve("/proc/self/exe", argv, envp.data());
    _exit(127);
  }
  return wait_child(pid, limit);
}

/// True inside a child started by run_child_test (hidden tests do nothing
/// when run by hand).
bool in_child() { return std::getenv("PALITRA_LIFECYCLE_CHILD") != nullptr; }

/// fork() with a running runner: ThreadSanitizer cannot follow (c2.6).
#if defined(PALITRA_TSAN)
#  define SKIP_FORK_UNDER_TSAN()                                                             \
    do {                                                                                     \
      WARN("skipped under ThreadSanitizer: a child of a multi-threaded fork() that starts "  \
           "threads is killed by TSan (die_after_fork)");                                    \
      return;                                                                                \
    } while (0)
#else
#  define SKIP_FORK_UNDER_TSAN() (void)0
#endif

} // namespace

// ---- close() -------------------------------------------------------------------

TEST_CASE("close with calls in flight from 32 threads: one outcome each, counters balance",
          "[lifecycle][close]") {
  watchdog w(60s);
  // Default spins, and none (callers sleep on the slot at once, the loop
  // sleeps in the reactor at once, so close() must wake it).
  const bool spin = GENERATE(true, false);
  INFO("spins " << (spin ? "default" : "zero"));
  palitra::runner_options o;
  if (!spin) o.caller_spin = o.loop_spin = std::chrono::nanoseconds(0);
  palitra::runner r(o);
  constexpr int threads = 32, long_threads = 8;
  std::atomic<long> attempts{0}, values{0}, closed_errors{0}, other{0}, wrong{0};
  std::atomic<int> long_started{0};
  auto f = [&long_started](int v, bool go_long) -> palitra::task<int> {
    if (go_long) {
      ++long_started;
      co_await palitra::sleep_for(60s); // only close() ends this
    }
    switch (v % 4) {
    case 0: break;
    case 1: co_await palitra::yield(); break;
    case 2: co_await palitra::sleep_for(0ms); break;
    default: co_await palitra::sleep_for(1ms); break;
    }
    co_return v * 2;
  };
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0;; ++i) {
        const int v = t * 1'000'000 + i;
        ++attempts;
        try {
          // Threads 0, 4, 8, ... park their 10th call in a 60 s sleep, so
          // close() certainly finds calls in flight.
          // Every 5th call carries a (long) timeout: its timer must be
          // removed when close() ends the call.
          const bool go_long = t % 4 == 0 && i == 9;
          const int got = i % 5 == 4 ? r.run(f(v, go_long), 30s) : r.run(f, v, go_long);
          if (got != v * 2) ++wrong;
          ++values;
        } catch (const palitra::runner_closed_error&) {
          ++closed_errors; // cancelled by close(), or rejected at the gate
          return;
        } catch (...) {
          ++other;
          return;
        }
      }
    });
  REQUIRE(eventually([&] { return long_started.load() == long_threads; }));
  std::this_thread::sleep_for(10ms);
  const auto t0 = steady::now();
  r.close();
  const auto close_took = steady::now() - t0;
  for (auto& t : ts) t.join();
  CHECK(close_took < 3s * watchdog::scale());
  REQUIRE(r.closed());
  REQUIRE(other == 0);
  REQUIRE(wrong == 0);
  REQUIRE(closed_errors == threads); // every thread ended with exactly one
  REQUIRE(attempts == values + closed_errors);
  const auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.failed == 0);
  REQUIRE(s.completed == std::uint64_t(values.load()));
  REQUIRE(s.cancelled >= std::uint64_t(long_threads)); // the parked calls
  REQUIRE(s.cancelled <= std::uint64_t(closed_errors.load()));
  // Rejected at the gate = the rest of the runner_closed_errors: never counted.
  REQUIRE(s.submitted == s.completed + s.cancelled);

  // Later submissions throw runner_closed_error and run nothing.
  bool ran = false;
  auto mark = [&ran]() -> palitra::task<int> {
    ran = true;
    co_return 1;
  };
  REQUIRE_THROWS_AS(r.run(mark), palitra::runner_closed_error);
  REQUIRE_THROWS_AS(r.run(mark(), 1s), palitra::runner_closed_error);
  REQUIRE_THROWS_AS(r.submit(mark()), palitra::runner_closed_error);
  REQUIRE_THROWS_AS(r.spawn([&ran]() -> palitra::task<void> {
    ran = true;
    co_return;
  }), palitra::runner_closed_error);
  REQUIRE_THROWS_AS(r.post([&ran] { ran = true; }), palitra::runner_closed_error);
  REQUIRE_FALSE(ran);
  REQUIRE(r.stats().submitted == s.submitted);
}

TEST_CASE("close is idempotent; concurrent close calls all return after the join",
          "[lifecycle][close]") {
  watchdog w(30s);
  const int fds_before = palitra_test::open_fds();
  palitra::runner_options o;
  o.name = "lc-join";
  palitra::runner r(o);
  REQUIRE(thread_named("lc-join"));
  REQUIRE(palitra_test::open_fds() > fds_before);
  // A caller in a long sleep gives close() real work before the join.
  std::atomic<int> caller_outcome{0};
  std::thread caller([&] {
    try {
      (void)r.run(sleep_then(60s, 1));
      caller_outcome = 1;
    } catch (const palitra::runner_closed_error&) {
      caller_outcome = 2;
    } catch (...) {
      caller_outcome = 3;
    }
  });
  wait_in_flight(r, 1);

  constexpr int closers = 8;
  std::atomic<int> go{0};
  std::mutex fd_mutex; // open_fds opens a DIR: one counter at a time
  std::vector<int> fds_after(closers, -1);
  std::vector<int> saw_closed(closers, 0), threw(closers, 0);
  std::vector<std::thread> ts;
  for (int i = 0; i < closers; ++i)
    ts.emplace_back([&, i] {
      go.fetch_add(1);
      while (go.load() < closers) std::this_thread::yield();
      try {
        r.close();
      } catch (...) {
        threw[i] = 1;
      }
      // Returned: the thread is joined and its fds are closed (they are
      // closed after the join, under the same lock).
      saw_closed[i] = r.closed();
      std::lock_guard<std::mutex> lk(fd_mutex);
      fds_after[i] = palitra_test::open_fds();
    });
  for (auto& t : ts) t.join();
  caller.join();
  for (int i = 0; i < closers; ++i) {
    INFO("closer " << i);
    REQUIRE(threw[i] == 0);
    REQUIRE(saw_closed[i] == 1);
    REQUIRE(fds_after[i] == fds_before);
  }
  REQUIRE(caller_outcome == 2);
  REQUIRE(thread_gone("lc-join"));
  r.close(); // once more: a no-op
  r.close();
  REQUIRE(r.closed());
  REQUIRE(palitra_test::fds_settled(fds_before) == fds_before);
  palitra_test::require_quiet(r.stats());
  REQUIRE(r.stats().cancelled == 1);
}

TEST_CASE("close releases callers blocked on long sleeps promptly", "[lifecycle][close]") {
  watchdog w(30s);
  std::atomic<int> unhandled{0};
  palitra::runner_options o;
  o.on_unhandled_error = [&unhandled](std::exception_ptr) { ++unhandled; };
  palitra::runner r(o);
  constexpr int callers = 8;
  std::vector<steady::time_point> released(callers);
  std::vector<int> outcome(callers, 0);
  std::vector<std::thread> ts;
  for (int i = 0; i < callers; ++i)
    ts.emplace_back([&, i] {
      try {
        (void)r.run(sleep_then(60s, i));
        outcome[i] = 1;
      } catch (const palitra::runner_closed_error& e) {
        outcome[i] = std::string(e.what()).find("close") != std::string::npos ? 2 : 4;
      } catch (...) {
        outcome[i] = 3;
      }
      released[i] = steady::now();
    });
  // A spawned task and a submitted future are cancelled by close() too.
  tracker::alive = 0;
  r.spawn([](tracker) -> palitra::task<void> { co_await palitra::sleep_for(60s); }(tracker{}));
  auto fut = r.submit(sleep_then(60s, 5));
  wait_in_flight(r, callers + 2);
  REQUIRE(tracker::alive == 1);

  const auto t0 = steady::now();
  r.close();
  const auto t1 = steady::now();
  for (auto& t : ts) t.join();
  CHECK(t1 - t0 < 2s * watchdog::scale());
  for (int i = 0; i < callers; ++i) {
    INFO("caller " << i);
    REQUIRE(outcome[i] == 2); // runner_closed_error naming close()
    REQUIRE(released[i] - t0 < 2s * watchdog::scale());
  }
  REQUIRE(fut.ready());
  REQUIRE_THROWS_AS(fut.get(), palitra::runner_closed_error);
  REQUIRE(tracker::alive == 0); // the spawned frame is gone
  REQUIRE(unhandled == 0);      // a spawned task ended by close() is not reported
  const auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.cancelled == callers + 2);
}

TEST_CASE("a value that finished before close took effect is returned", "[lifecycle][close]") {
  watchdog w(30s);
  palitra::runner r;
  std::atomic<bool> busy{false};
  std::atomic<int> saw_closed{0}, saw_cancelled{0};
  // CPU-bound: no cancellation point between close() and co_return, so the
  // value comes first and is the caller's.
  auto cpu = [&]() -> palitra::task<int> {
    busy = true;
    while (!palitra::this_task::cancelled()) std::this_thread::yield();
    saw_cancelled = 1; // close() is visible through this_task::cancelled()
    saw_closed = r.closed();
    co_return 42;
  };
  // Catches the cancellation and returns a value anyway: a value, too.
  auto stubborn = []() -> palitra::task<int> {
    try {
      co_await palitra::sleep_for(60s);
    } catch (const palitra::cancelled_error&) {
      co_return 77;
    }
    co_return 0;
  };
  int a = 0, b = 0;
  std::exception_ptr ea, eb;
  std::thread t1([&] {
    try {
      b = r.run(stubborn());
    } catch (...) {
      eb = std::current_exception();
    }
  });
  wait_in_flight(r, 1);
  std::thread t2([&] {
    try {
      a = r.run(cpu);
    } catch (...) {
      ea = std::current_exception();
    }
  });
  REQUIRE(eventually([&] { return busy.load(); }));
  r.close();
  t1.join();
  t2.join();
  REQUIRE_FALSE(ea);
  REQUIRE_FALSE(eb);
  REQUIRE(a == 42);
  REQUIRE(b == 77);
  REQUIRE(saw_cancelled == 1);
  REQUIRE(saw_closed == 1);
  const auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.completed == 2);
  REQUIRE(s.cancelled == 0);
}

TEST_CASE("closed and on_loop_thread", "[lifecycle]") {
  watchdog w(30s);
  palitra::runner a, b;
  REQUIRE_FALSE(a.closed());
  REQUIRE_FALSE(a.on_loop_thread());
  auto where = [&]() -> palitra::task<int> {
    co_await palitra::yield();
    co_return (a.on_loop_thread() ? 1 : 0) | (b.on_loop_thread() ? 2 : 0) |
              (a.closed() ? 4 : 0);
  };
  REQUIRE(a.run(where) == 1);
  REQUIRE(b.run(where) == 2);
  // Any other thread is not the loop thread.
  int other = -1;
  std::thread([&] { other = a.on_loop_thread() ? 1 : 0; }).join();
  REQUIRE(other == 0);
  // close() of another runner from a loop thread is allowed (it blocks that
  // loop until the other one is joined).
  palitra::runner c;
  auto close_c = [&c]() -> palitra::task<int> {
    c.close();
    co_return c.closed() ? 1 : 0;
  };
  REQUIRE(a.run(close_c) == 1);
  REQUIRE(c.closed());
  palitra_test::require_quiet(c.stats());
  a.close();
  REQUIRE(a.closed());
  REQUIRE_FALSE(a.on_loop_thread());
  REQUIRE_FALSE(b.closed());
  REQUIRE(b.run(where) == (2 | 4)); // on b's loop; a reports closed
  palitra_test::require_quiet(a.stats());
  palitra_test::require_quiet(b.stats());
}

TEST_CASE("the runner destructor closes: spawned tasks end, thread joined, fds closed",
          "[lifecycle][close]") {
  watchdog w(30s);
  const int fds_before = palitra_test::open_fds();
  tracker::alive = 0;
  std::atomic<int> unhandled{0};
  {
    palitra::runner_options o;
    o.name = "lc-dtor";
    o.on_unhandled_error = [&unhandled](std::exception_ptr) { ++unhandled; };
    palitra::runner r(o);
    for (int i = 0; i < 4; ++i)
      r.spawn([](tracker) -> palitra::task<void> { co_await palitra::sleep_for(60s); }(
          tracker{}));
    REQUIRE(r.run(add(1, 2)) == 3);
    wait_in_flight(r, 4);
    REQUIRE(tracker::alive == 4);
    REQUIRE(thread_named("lc-dtor"));
  } // ~runner
  REQUIRE(tracker::alive == 0);
  REQUIRE(unhandled == 0);
  REQUIRE(palitra_test::fds_settled(fds_before) == fds_before);
  REQUIRE(thread_gone("lc-dtor"));
}

TEST_CASE("no fd leak across runners", "[lifecycle][fd]") {
  watchdog w(30s);
  const int fds_before = palitra_test::open_fds();
  for (int i = 0; i < 20; ++i) {
    palitra::runner r;
    REQUIRE(r.run(sleep_then(0ms, i)) == i);
    palitra_test::require_quiet(r.stats());
    if (i % 2 == 0) {
      // closed explicitly (fds released by close(), before the destructor)
      r.close();
      REQUIRE(palitra_test::fds_settled(fds_before) == fds_before);
    }
  }
  REQUIRE(palitra_test::fds_settled(fds_before) == fds_before);
  // Several alive at once, closed in another order than created.
  {
    std::vector<std::unique_ptr<palitra::runner>> rs;
    for (int i = 0; i < 5; ++i) rs.push_back(std::make_unique<palitra::runner>());
    for (int i = 0; i < 5; ++i) REQUIRE(rs[i]->run(add(i, 1)) == i + 1);
    rs[2].reset();
    rs[0]->close();
  }
  REQUIRE(palitra_test::fds_settled(fds_before) == fds_before);
}

// ---- the global runner ------------------------------------------------------------

TEST_CASE("global runner: lazy creation raced by many threads yields one runner",
          "[lifecycle][global]") {
  watchdog w(30s);
  palitra::shutdown_global_runner(); // in case an earlier test in this process made one
  REQUIRE_FALSE(palitra::is_runner_alive());
  constexpr int threads = 16;
  std::atomic<int> go{0};
  std::vector<palitra::runner*> seen(threads, nullptr);
  std::vector<int> results(threads, -1);
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i)
    ts.emplace_back([&, i] {
      go.fetch_add(1);
      while (go.load() < threads) std::this_thread::yield(); // a busy spin starves TSan
      if (i % 2 == 0) {
        seen[i] = &palitra::global_runner();
        results[i] = palitra::run(add(i, 1));
      } else {
        results[i] = palitra::run(add(i, 1));
        seen[i] = &palitra::global_runner();
      }
    });
  for (auto& t : ts) t.join();
  for (int i = 0; i < threads; ++i) {
    REQUIRE(seen[i] == seen[0]);
    REQUIRE(results[i] == i + 1);
  }
  REQUIRE(palitra::is_runner_alive());
  REQUIRE(&palitra::global_runner() == seen[0]);
  palitra_test::require_quiet(palitra_test::settled_stats(palitra::global_runner()));
  REQUIRE(palitra::global_runner().stats().submitted == threads);
}

TEST_CASE("shutdown_global_runner: idempotent, next run recreates, old reference stays valid",
          "[lifecycle][global]") {
  watchdog w(30s);
  palitra::shutdown_global_runner(); // in case an earlier test in this process made one
  const int fds_before = palitra_test::open_fds();
  REQUIRE(palitra::run(add(1, 2)) == 3);
  REQUIRE(palitra::is_runner_alive());
  palitra::runner& g1 = palitra::global_runner();
  REQUIRE_FALSE(g1.closed());
  const auto completed_before = palitra_test::settled_stats(g1).completed;

  palitra::shutdown_global_runner();
  REQUIRE_FALSE(palitra::is_runner_alive());
  REQUIRE(g1.closed());
  REQUIRE(palitra_test::fds_settled(fds_before) == fds_before); // joined, fds closed
  palitra::shutdown_global_runner(); // idempotent
  palitra::shutdown_global_runner();
  REQUIRE_FALSE(palitra::is_runner_alive());

  // The old reference is still a valid object: closed, it rejects everything.
  REQUIRE_THROWS_AS(g1.run(add(1, 1)), palitra::runner_closed_error);
  REQUIRE_THROWS_AS(g1.submit(add(1, 1)), palitra::runner_closed_error);
  REQUIRE_THROWS_AS(g1.post([] {}), palitra::runner_closed_error);
  g1.close(); // and closing it again is a no-op
  palitra_test::require_quiet(g1.stats());
  REQUIRE(g1.stats().completed == completed_before);

  // The next run creates a new runner.
  REQUIRE(palitra::run(add(2, 2)) == 4);
  REQUIRE(palitra::is_runner_alive());
  palitra::runner& g2 = palitra::global_runner();
  REQUIRE(&g2 != &g1);
  REQUIRE_FALSE(g2.closed());
  REQUIRE(g1.closed());
  REQUIRE(g2.stats().submitted == 1);

  // global_runner().close() has the same effect as shutdown_global_runner().
  g2.close();
  palitra_test::require_quiet(g2.stats());
  REQUIRE_FALSE(palitra::is_runner_alive());
  REQUIRE(palitra::run([]() -> palitra::task<int> {
            co_await palitra::yield();
            co_return 5;
          }) == 5);
  REQUIRE(&palitra::global_runner() != &g2);

  // Concurrent shutdowns all return (after the join) and leave it closed.
  palitra::runner& g3 = palitra::global_runner();
  std::vector<std::thread> ts;
  for (int i = 0; i < 6; ++i) ts.emplace_back([] { palitra::shutdown_global_runner(); });
  for (auto& t : ts) t.join();
  REQUIRE(g3.closed());
  REQUIRE_FALSE(palitra::is_runner_alive());
  REQUIRE(palitra_test::fds_settled(fds_before) == fds_before);
}

TEST_CASE("threads holding the global runner get runner_closed_error when it shuts down",
          "[lifecycle][global]") {
  watchdog w(30s);
  constexpr int threads = 16;
  palitra::runner& g = palitra::global_runner();
  std::atomic<long> values{0}, closed_errors{0}, other{0}, wrong{0};
  std::atomic<int> progressed{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0;; ++i) {
        try {
          // Half the threads end up parked in a long sleep.
          const auto d = (t % 2 == 0 && i == 3) ? std::chrono::milliseconds(60'000)
                                                 : std::chrono::milliseconds(i % 2);
          if (g.run(sleep_then(d, t * 1000 + i)) != t * 1000 + i) ++wrong;
          ++values;
          if (i == 2) ++progressed;
        } catch (const palitra::runner_closed_error&) {
          ++closed_errors;
          return;
        } catch (...) {
          ++other;
          return;
        }
      }
    });
  REQUIRE(eventually([&] { return progressed.load() == threads; }));
  palitra::shutdown_global_runner();
  for (auto& t : ts) t.join();
  REQUIRE(other == 0);
  REQUIRE(wrong == 0);
  REQUIRE(closed_errors == threads);
  REQUIRE(g.closed());
  const auto s = g.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.completed == std::uint64_t(values.load()));
  REQUIRE(s.cancelled >= threads / 2);
  // The free functions move on to a new runner.
  REQUIRE(palitra::run(add(20, 22)) == 42);
  REQUIRE(&palitra::global_runner() != &g);
}

TEST_CASE("palitra::run from many threads while the global runner is shut down repeatedly",
          "[lifecycle][global]") {
  watchdog w(60s);
  constexpr int threads = 8;
#if defined(PALITRA_TSAN)
  constexpr int calls = 150;
#else
  constexpr int calls = 600;
#endif
  std::atomic<long> values{0}, closed_errors{0}, other{0}, wrong{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < calls; ++i) {
        const int v = t * 10000 + i;
        try {
          const int got = palitra::run(
              [](int x) -> palitra::task<int> {
                if (x % 3 == 0) co_await palitra::sleep_for(200us);
                if (x % 3 == 1) co_await palitra::yield();
                co_return x + 1;
              },
              v);
          if (got != v + 1) ++wrong;
          ++values;
        } catch (const palitra::runner_closed_error&) {
          ++closed_errors; // its runner was closed under it
        } catch (...) {
          ++other;
        }
      }
    });
  std::thread closer([&] {
    int shutdowns = 0;
    while (!done.load() && shutdowns < 200) {
      std::this_thread::sleep_for(2ms);
      palitra::shutdown_global_runner();
      ++shutdowns;
    }
  });
  for (auto& t : ts) t.join();
  done = true;
  closer.join();
  std::printf("run vs shutdown: %ld values, %ld runner_closed_error\n", values.load(),
              closed_errors.load());
  REQUIRE(other == 0);
  REQUIRE(wrong == 0);
  REQUIRE(values + closed_errors == long(threads) * calls);
  REQUIRE(palitra::run(add(1, 1)) == 2);
  REQUIRE(palitra::is_runner_alive());
  palitra_test::require_quiet(palitra_test::settled_stats(palitra::global_runner()));
}

// ---- fork() ------------------------------------------------------------------------

TEST_CASE("fork: the child recreates the global runner on next use; the parent's is unaffected",
          "[lifecycle][fork]") {
  SKIP_FORK_UNDER_TSAN();
  watchdog w(60s);
  REQUIRE(palitra::run(add(1, 2)) == 3);
  palitra::runner& g = palitra::global_runner();
  REQUIRE(palitra::is_runner_alive());
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Child: no Catch assertions here; the exit status says what failed.
    int code = 0;
    try {
      palitra::shutdown_global_runner(); // on the inherited one: returns at once
      if (palitra::is_runner_alive()) code = 10;
      else if (!g.closed()) code = 11;
      else if (palitra::run(add(2, 3)) != 5) code = 12;
      else if (!palitra::is_runner_alive()) code = 13;
      else if (&palitra::global_runner() == &g) code = 14;
      else if (palitra::run(sleep_then(1ms, 7)) != 7) code = 15;
    } catch (...) {
      code = 16;
    }
    _exit(code);
  }
  REQUIRE(wait_child(pid) == 0);
  // The parent's runner is the same and still works.
  REQUIRE(palitra::is_runner_alive());
  REQUIRE(&palitra::global_runner() == &g);
  REQUIRE_FALSE(g.closed());
  REQUIRE(palitra::run(sleep_then(1ms, 9)) == 9);
  palitra_test::require_quiet(g.stats());
}

TEST_CASE("fork: an inherited explicit runner throws runner_closed_error; close and destructor "
          "return at once",
          "[lifecycle][fork]") {
  SKIP_FORK_UNDER_TSAN();
  watchdog w(60s);
  const int fds_before = palitra_test::open_fds();
  auto* r = new palitra::runner;
  REQUIRE(r->run(add(1, 2)) == 3);
  // Something in flight in the parent at fork time.
  r->spawn([]() -> palitra::task<void> { co_await palitra::sleep_for(60s); });
  wait_in_flight(*r, 1);
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 0;
    auto expect_closed = [&code](int c, auto&& f) {
      if (code != 0) return;
      try {
        f();
        code = c; // did not throw
      } catch (const palitra::runner_closed_error&) {
      } catch (...) {
        code = c + 50;
      }
    };
    if (!r->closed()) code = 10;
    if (code == 0 && r->on_loop_thread()) code = 11;
    expect_closed(12, [&] { (void)r->run(add(1, 1)); });
    expect_closed(13, [&] { (void)r->run(add(1, 1), 1s); });
    expect_closed(14, [&] { auto f = r->submit(add(1, 1)); });
    expect_closed(15, [&] { r->spawn([]() -> palitra::task<void> { co_return; }); });
    expect_closed(16, [&] { r->post([] {}); });
    if (code == 0) {
      const auto t0 = steady::now();
      try {
        r->close();
        r->close();
      } catch (...) {
        code = 17;
      }
      if (code == 0 && steady::now() - t0 > 1s) code = 18;
      const auto t1 = steady::now();
      delete r;
      if (code == 0 && steady::now() - t1 > 1s) code = 19;
    }
    // A new runner works in the child.
    if (code == 0) {
      try {
        palitra::runner c;
        if (c.run(sleep_then(1ms, 4)) != 4) code = 20;
      } catch (...) {
        code = 21;
      }
    }
    _exit(code);
  }
  REQUIRE(wait_child(pid) == 0);
  // The parent's runner is unaffected.
  REQUIRE_FALSE(r->closed());
  REQUIRE(r->run(sleep_then(1ms, 8)) == 8);
  const auto s = r->stats();
  REQUIRE(s.in_flight == 1); // the spawned sleeper
  delete r;                  // cancels it and joins
  REQUIRE(palitra_test::fds_settled(fds_before) == fds_before);
}

// Regression: future::reset() once waited in a forked child for a loop
// thread that does not exist there (DESIGN.md §2 "After fork()", §4).
TEST_CASE("fork: a future inherited from the parent can be destroyed in the child at once",
          "[lifecycle][fork]") {
  SKIP_FORK_UNDER_TSAN();
  watchdog w(60s);
  palitra::runner r;
  auto fut = std::make_unique<palitra::future<int>>(r.submit(sleep_then(60s, 1)));
  wait_in_flight(r, 1);
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 0;
    try {
      (void)fut->get();
      code = 10;
    } catch (const palitra::runner_closed_error&) {
    } catch (...) {
      code = 11;
    }
    if (code == 0 && fut->ready()) code = 12;
    fut->cancel(); // never blocks
    const auto t0 = steady::now();
    fut.reset(); // must not wait for a loop thread that does not exist here
    if (code == 0 && steady::now() - t0 > 1s) code = 13;
    _exit(code);
  }
  REQUIRE(wait_child(pid, 10s) == 0);
  // The parent's future is unaffected: cancel it through its destructor.
  fut.reset();
  palitra_test::require_quiet(r.stats());
  REQUIRE(r.stats().cancelled == 1);
}

TEST_CASE("fork while other threads are mid-call and the global runner churns",
          "[lifecycle][fork]") {
  SKIP_FORK_UNDER_TSAN();
  watchdog w(60s);
  std::atomic<bool> stop{false};
  std::atomic<long> values{0}, other{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        try {
          if (palitra::run(sleep_then(std::chrono::milliseconds(i % 2), i)) == i) ++values;
          else ++other;
        } catch (const palitra::runner_closed_error&) {
        } catch (...) {
          ++other;
        }
        // One thread keeps the global runner's creation path (and its
        // mutex) busy, so some forks catch it held.
        if (t == 0 && i % 8 == 0) palitra::shutdown_global_runner();
      }
    });
  REQUIRE(eventually([&] { return values.load() > 50; }));
  for (int k = 0; k < 5; ++k) {
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int code = 0;
      try {
        if (palitra::run(sleep_then(1ms, 11)) != 11) code = 10;
        else if (palitra::run(add(2, 2)) != 4) code = 11;
      } catch (...) {
        code = 12;
      }
      _exit(code);
    }
    INFO("fork " << k);
    REQUIRE(wait_child(pid, 20s) == 0);
    std::this_thread::sleep_for(3ms);
  }
  stop = true;
  for (auto& t : ts) t.join();
  REQUIRE(other == 0);
  REQUIRE(palitra::run(add(3, 4)) == 7);
}

// ---- exit() ----------------------------------------------------------------------
// Each scenario is a hidden test run in a fresh child by the visible test below it.

namespace {
palitra::runner* g_child_runner = nullptr;

// Outcome of a palitra::run made from a static destructor: 1 value,
// 2 runner_closed_error, 3 anything else.
std::atomic<int> g_early_dtor{0}, g_late_dtor{0};

int run_outcome() {
  try {
    return palitra::run(add(2, 2)) == 4 ? 1 : 3;
  } catch (const palitra::runner_closed_error&) {
    return 2;
  } catch (...) {
    return 3;
  }
}

/// A static whose destructor calls palitra::run. Built before the first
/// palitra use, it is destroyed after palitra's atexit handler ran (late:
/// must get runner_closed_error); built after, it is destroyed before
/// (early: must still get its value). Either way: never UB.
struct static_caller {
  std::atomic<int>* out;
  ~static_caller() { out->store(run_outcome()); }
};

/// Registered before the first palitra use, so it runs after palitra's atexit
/// handler (handlers run in reverse order of registration).
void after_palitra_atexit() {
  int code = 0;
  if (palitra::is_runner_alive()) code = 30;
  else if (g_child_runner == nullptr || !g_child_runner->closed()) code = 31;
  else if (!eventually([] { return !thread_named("palitra-global"); }, 2000ms)) code = 32;
  else if (g_early_dtor.load() != 1) code = 40 + g_early_dtor.load();
  else if (g_late_dtor.load() != 2) code = 50 + g_late_dtor.load();
  if (code == 0) {
    try {
      (void)palitra::run(add(1, 1));
      code = 33; // no re-creation during exit
    } catch (const palitra::runner_closed_error&) {
    } catch (...) {
      code = 34;
    }
  }
  if (code == 0) {
    try {
      (void)palitra::global_runner();
      code = 35;
    } catch (const palitra::runner_closed_error&) {
    } catch (...) {
      code = 36;
    }
  }
  if (code == 0) {
    try {
      (void)g_child_runner->run(add(1, 1));
      code = 37;
    } catch (const palitra::runner_closed_error&) {
    } catch (...) {
      code = 38;
    }
  }
  if (code == 0) {
    try {
      palitra::shutdown_global_runner(); // idempotent, even now
    } catch (...) {
      code = 39;
    }
  }
  std::fflush(stdout);
  _exit(code); // the status carries the verdict
}
} // namespace

TEST_CASE("lifecycle child: atexit closes the global runner then run throws", "[.child]") {
  if (!in_child()) return;
  std::atexit(&after_palitra_atexit); // before any palitra use
  static static_caller late{&g_late_dtor};
  if (palitra::run(add(1, 2)) != 3) _exit(20);
  static static_caller early{&g_early_dtor};
  g_child_runner = &palitra::global_runner();
  if (!thread_named("palitra-global")) _exit(21);
  std::exit(0);
}

TEST_CASE("exit: the atexit handler closes the global runner; later run throws "
          "runner_closed_error",
          "[lifecycle][exit]") {
  watchdog w(60s);
  REQUIRE(run_child_test("lifecycle child: atexit closes the global runner then run throws") ==
          0);
}

TEST_CASE("lifecycle child: exit with the global runner alive", "[.child]") {
  if (!in_child()) return;
  if (palitra::run(sleep_then(1ms, 3)) != 3) _exit(20);
  // Something in flight at exit too: a spawned task on the global runner.
  palitra::global_runner().spawn([]() -> palitra::task<void> {
    co_await palitra::sleep_for(60s);
  });
  std::exit(0); // atexit joins the loop thread; static destructors follow
}

TEST_CASE("exit: std::exit with the global runner alive exits 0", "[lifecycle][exit]") {
  watchdog w(60s);
  REQUIRE(run_child_test("lifecycle child: exit with the global runner alive") == 0);
}

TEST_CASE("lifecycle child: exit from a coroutine on the loop thread", "[.child]") {
  if (!in_child()) return;
  if (palitra::run(add(1, 2)) != 3) _exit(20);
  (void)palitra::run([]() -> palitra::task<int> {
    co_await palitra::yield();
    std::exit(7); // on the loop thread: atexit cannot join it, abandons it
    co_return 0;
  });
  _exit(21); // not reached
}

TEST_CASE("exit: std::exit inside a coroutine on the loop thread does not hang",
          "[lifecycle][exit]") {
  watchdog w(60s);
  REQUIRE(run_child_test("lifecycle child: exit from a coroutine on the loop thread") == 7);
}

TEST_CASE("lifecycle child: exit while threads are mid-call", "[.child]") {
  if (!in_child()) return;
  static std::atomic<long> calls{0};
  for (int t = 0; t < 8; ++t) {
    std::thread([t] {
      for (int i = 0;; ++i) {
        const int v = t * 100000 + i;
        try {
          const auto d = std::chrono::milliseconds(t % 4 == 3 ? 60'000 : i % 3);
          if (palitra::run(sleep_then(d, v)) != v) _exit(22);
          calls.fetch_add(1);
        } catch (const palitra::runner_closed_error&) {
          return; // closed by the atexit handler; no re-creation during exit
        } catch (...) {
          _exit(23);
        }
      }
    }).detach(); // never joined: exit() runs while they call
  }
  while (calls.load() < 200) std::this_thread::sleep_for(1ms);
  std::exit(0);
}

TEST_CASE("exit: std::exit while other threads are mid-call exits 0", "[lifecycle][exit]") {
  watchdog w(60s);
  for (int k = 0; k < 3; ++k) {
    INFO("run " << k);
    REQUIRE(run_child_test("lifecycle child: exit while threads are mid-call") == 0);
  }
}

TEST_CASE("a runner destroyed right after close() while its callers are still returning",
          "[lifecycle][close]") {
  // close() releases every caller, then the owner destroys the runner at
  // once (as with notify then ~condition_variable): a released caller still
  // inside run() or future::get() must not touch the runner any more (the
  // adaptive budget and the presence it reads live in a static pool for
  // that reason, core/runtime/wait_hints.hpp). ASan reports any access to
  // the freed runner.
  watchdog w(120s);
  auto long_call = []() -> palitra::task<int> {
    co_await palitra::sleep_for(30s);
    co_return 1;
  };
  for (int round = 0; round < 40; ++round) {
    auto r = std::make_unique<palitra::runner>();
    palitra::runner* rp = r.get(); // the threads never read `r` itself
    std::atomic<int> closed{0}, started{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([&, t] {
        try {
          started.fetch_add(1);
          if (t % 2 == 0) {
            static_cast<void>(rp->run(long_call));
          } else {
            auto f = rp->submit(long_call());
            static_cast<void>(f.get());
          }
        } catch (const palitra::runner_closed_error&) {
          closed.fetch_add(1);
        }
      });
    while (started.load() < 4 || r->stats().in_flight < 4) std::this_thread::sleep_for(1ms);
    r->close();
    r.reset(); // at once: callers may still be between their wake and return
    for (auto& t : ts) t.join();
    REQUIRE(closed.load() == 4);
  }
}

// ---- review 2026-12-07: A1, A7, A8, A9, A11 -------------------------------------

TEST_CASE("in_flight_calls racing close() then the runner's destruction",
          "[lifecycle][close]") {
  // A1: in_flight_calls() waited on its answer through the runner it had
  // pushed to; close() then ~runner could free that runner first. ASan
  // reports any such access.
  watchdog w(120s);
  for (int round = 0; round < 40; ++round) {
    auto r = std::make_unique<palitra::runner>();
    palitra::runner* rp = r.get();
    std::atomic<int> started{0};
    std::atomic<bool> closing{false};
    std::vector<std::thread> ts;
    for (int t = 0; t < 3; ++t)
      ts.emplace_back([&] {
        started.fetch_add(1);
        // Each call starts while the runner is certainly alive (the main
        // thread waits for `closing` to be seen before it destroys it).
        while (!closing.load()) (void)rp->in_flight_calls();
        (void)rp->in_flight_calls();
      });
    while (started.load() < 3) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(2ms);
    closing.store(true);
    r->close();
    for (auto& t : ts) t.join();
    r.reset();
  }
}

namespace {
// A function-local static first built by a coroutine, after the global
// runner's first use: exit() destroys it before the runner's exit handler.
struct lazy_resource {
  std::atomic<bool> alive{true};
  ~lazy_resource() { alive.store(false); }
};
lazy_resource& lazy() {
  static lazy_resource r;
  return r;
}

palitra::task<void> uses_lazy_static() {
  for (;;) {
    try {
      if (!lazy().alive.load()) _exit(3);
      co_await palitra::sleep_for(1ms);
    } catch (const palitra::cancelled_error&) {
      if (!lazy().alive.load()) _exit(3); // unwinding after the static died
      throw;
    }
  }
}

void lazy_static_child(bool guarded) {
  {
    std::unique_ptr<palitra::runtime_guard> guard;
    if (guarded) guard = std::make_unique<palitra::runtime_guard>();
    if (palitra::run(add(1, 2)) != 3) _exit(20);
    palitra::global_runner().spawn(uses_lazy_static());
    std::this_thread::sleep_for(20ms);
  } // the guard closes the runner here
  std::exit(0);
}
} // namespace

TEST_CASE("lifecycle child: a lazy static used by a spawned task with runtime_guard", "[.child]") {
  if (in_child()) lazy_static_child(true);
}
TEST_CASE("lifecycle child: a lazy static used by a spawned task without a guard", "[.child]") {
  if (in_child()) lazy_static_child(false);
}

TEST_CASE("exit: runtime_guard closes the global runner before statics are destroyed",
          "[lifecycle][exit]") {
  // A7: without the guard the exit handler runs after the lazy static's
  // destructor, and the task sees it dead (status 3); with it, never.
  watchdog w(60s);
  REQUIRE(run_child_test("lifecycle child: a lazy static used by a spawned task, with "
                         "runtime_guard") == 0);
  REQUIRE(run_child_test("lifecycle child: a lazy static used by a spawned task without a guard") ==
          3);
}

TEST_CASE("close returns while many threads keep retrying rejected submissions",
          "[lifecycle][close]") {
  // A8: rejected producers used to enter the gate's count before reading
  // the state, so a storm of retries could keep S2 from ever seeing zero.
  watchdog w(60s);
  palitra::runner r;
  std::atomic<bool> stop{false};
  std::atomic<long> rejected{0}, posted{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        try {
          r.post([] {});
          posted.fetch_add(1, std::memory_order_relaxed);
        } catch (const palitra::runner_closed_error&) {
          rejected.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  while (posted.load() < 1000) std::this_thread::sleep_for(1ms);
  r.close(); // the watchdog turns a starved S2 into a failure
  while (rejected.load() < 10000) std::this_thread::sleep_for(1ms);
  stop.store(true);
  for (auto& t : ts) t.join();
  REQUIRE(r.closed());
}

TEST_CASE("fork: a child forked on the loop thread leaves instead of running the inherited loop",
          "[lifecycle][fork]") {
  // A9: the child used to return into a copy of the loop that shares the
  // parent's epoll instance and wake fd (it could swallow the parent's
  // wake-up) and slept there forever.
  SKIP_FORK_UNDER_TSAN();
  watchdog w(60s);
  palitra::runner r;
  const pid_t pid = r.run([]() -> palitra::task<int> {
    co_await palitra::yield();
    co_return static_cast<int>(fork()); // the child returns 0 into the loop
  });
  REQUIRE(pid > 0);
  REQUIRE(wait_child(pid) == EXIT_FAILURE);
  // The parent's loop sleeps, then is woken as usual.
  for (int i = 0; i < 20; ++i) {
    std::this_thread::sleep_for(5ms);
    REQUIRE(r.run(add(i, 1)) == i + 1);
  }
}

namespace {
// An awaitable of a foreign library that knows nothing of cancellation: it
// resumes only when someone schedules it (here: the slow-close report).
std::coroutine_handle<> g_stuck;
palitra::detail::ready_item g_stuck_item;
struct ignores_cancellation {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) noexcept { g_stuck = h; }
  void await_resume() const noexcept {}
};
} // namespace

TEST_CASE("close: calls that do not unwind are reported after close_warning",
          "[lifecycle][close]") {
  // A11: close() waits for every call (returning earlier would let their
  // code run on after it), but says which calls it waits for.
  watchdog w(60s);
  std::atomic<int> reports{0};
  std::vector<palitra::call_info> seen;
  palitra::runner_options o;
  o.close_warning = 50ms;
  o.on_slow_close = [&](const std::vector<palitra::call_info>& calls) {
    seen = calls;
    reports.fetch_add(1);
    g_stuck_item.handle = g_stuck; // let it go now
    palitra::detail::schedule(*palitra::detail::current_loop(), g_stuck_item);
  };
  palitra::runner r(o);
  auto f = r.submit([]() -> palitra::task<int> {
    co_await ignores_cancellation{};
    co_return 5;
  }());
  while (r.stats().in_flight < 1) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(5ms);
  const auto t0 = steady::now();
  r.close();
  REQUIRE(steady::now() - t0 >= 50ms);
  REQUIRE(reports.load() == 1);
  REQUIRE(seen.size() == 1);
  REQUIRE(seen[0].kind == palitra::call_info::call_kind::future);
  REQUIRE(seen[0].cancelling);
  REQUIRE(f.get() == 5); // it finished with a value before it was released

  // A close whose calls unwind at once reports nothing.
  palitra_test::event_log log; // outlives q: the marker writes it on q's loop
  palitra::runner q(o);
  auto g = q.submit(palitra_test::sleeper(palitra_test::marker(log, "s")));
  q.close();
  REQUIRE(reports.load() == 1);
  REQUIRE_THROWS_AS(g.get(), palitra::runner_closed_error);
}

// ---- close(grace) (DESIGN.md §7): stop accepting at once, let what was
// accepted run for at most the grace, then close() as usual.

namespace {

/// A task that waits on a std::shared_future in a to_thread job: it ends as
/// soon as the test releases it, whatever the loop is doing (no timers).
palitra::task<int> held(std::shared_future<void> release, int v) {
  auto wait = [release] { release.wait(); }; // named: see to_thread.hpp (g++ 12)
  co_await palitra::to_thread(wait);
  co_return v;
}

} // namespace

TEST_CASE("close with a grace lets calls that finish in time return their values",
          "[lifecycle][close][grace]") {
  watchdog w(30s);
  palitra::runner r;
  std::atomic<int> saw_cancelled{0};
  auto sleepy = [&](int v) -> palitra::task<int> {
    co_await palitra::sleep_for(20ms);
    if (palitra::this_task::cancelled()) ++saw_cancelled; // E7: not during the grace
    co_return v;
  };
  std::vector<int> got(3, -1);
  std::vector<std::thread> callers;
  for (int i = 0; i < 3; ++i)
    callers.emplace_back([&, i] {
      try {
        got[i] = r.run(sleepy, i);
      } catch (...) {
        got[i] = -2;
      }
    });
  auto fut = r.submit(sleepy(10));
  wait_in_flight(r, 4);
  const auto t0 = steady::now();
  r.close(5s);
  const auto took = steady::now() - t0;
  for (auto& t : callers) t.join();
  REQUIRE(took < 2s); // the calls ended after ~20 ms: no waiting for the grace
  for (int i = 0; i < 3; ++i) REQUIRE(got[i] == i);
  REQUIRE(fut.get() == 10);
  REQUIRE(saw_cancelled == 0);
  palitra_test::require_quiet(r.stats());
  REQUIRE(r.stats().completed == 4);
  REQUIRE(r.stats().cancelled == 0);
}

TEST_CASE("close with a grace cancels what still runs when the grace ends",
          "[lifecycle][close][grace]") {
  watchdog w(30s);
  std::atomic<int> unhandled{0};
  palitra::runner_options o;
  o.on_unhandled_error = [&unhandled](std::exception_ptr) { ++unhandled; };
  palitra::runner r(o);
  std::atomic<int> outcome{0};
  std::thread caller([&] {
    try {
      (void)r.run(sleep_then(60s, 1));
      outcome = 1;
    } catch (const palitra::runner_closed_error&) {
      outcome = 2;
    } catch (...) {
      outcome = 3;
    }
  });
  auto fut = r.submit(sleep_then(60s, 2));
  r.spawn([]() -> palitra::task<void> { co_await palitra::sleep_for(60s); });
  wait_in_flight(r, 3);
  const auto t0 = steady::now();
  r.close(50ms);
  const auto took = steady::now() - t0;
  caller.join();
  REQUIRE(took >= 50ms);
  REQUIRE(took < 10s);
  REQUIRE(outcome == 2);
  REQUIRE_THROWS_AS(fut.get(), palitra::runner_closed_error);
  REQUIRE(unhandled == 0); // a spawned task ended by close is not reported
  palitra_test::require_quiet(r.stats());
  REQUIRE(r.stats().cancelled == 3);
}

TEST_CASE("close with a grace refuses new submissions at once", "[lifecycle][close][grace]") {
  watchdog w(30s);
  palitra::runner r;
  std::promise<void> release;
  auto fut = r.submit(held(release.get_future().share(), 5));
  wait_in_flight(r, 1);
  std::thread closer([&] { r.close(20s); });
  REQUIRE(eventually([&] { return r.closed(); }));
  // The grace phase: the held call still runs, and nothing new gets in.
  REQUIRE_THROWS_AS(r.run(add(1, 2)), palitra::runner_closed_error);
  REQUIRE_THROWS_AS(r.submit(add(1, 2)), palitra::runner_closed_error);
  REQUIRE_THROWS_AS(r.spawn([]() -> palitra::task<void> { co_return; }),
                    palitra::runner_closed_error);
  REQUIRE_THROWS_AS(r.post([] {}), palitra::runner_closed_error);
  REQUIRE_THROWS_AS(r.start([](palitra::started<>& s) -> palitra::task<void> {
                      s.set();
                      co_return;
                    }),
                    palitra::runner_closed_error);
  REQUIRE_FALSE(fut.ready());
  release.set_value();
  closer.join(); // returns once the held call ended, long before 20 s
  REQUIRE(fut.get() == 5);
  palitra_test::require_quiet(r.stats());
  REQUIRE(r.stats().submitted == 1);
  REQUIRE(r.stats().completed == 1);
}

TEST_CASE("close with a grace gives spawned tasks the grace too", "[lifecycle][close][grace]") {
  watchdog w(30s);
  std::atomic<int> unhandled{0};
  palitra::runner_options o;
  o.on_unhandled_error = [&unhandled](std::exception_ptr) { ++unhandled; };
  palitra::runner r(o);
  std::promise<void> release;
  std::atomic<int> finished{0};
  r.spawn([&finished, rel = release.get_future().share()]() -> palitra::task<void> {
    (void)co_await held(rel, 0);
    co_await palitra::sleep_for(1ms); // timers still run during the grace
    ++finished;
  });
  wait_in_flight(r, 1);
  std::thread closer([&] { r.close(20s); });
  REQUIRE(eventually([&] { return r.closed(); }));
  REQUIRE(finished == 0);
  release.set_value();
  closer.join();
  REQUIRE(finished == 1);
  REQUIRE(unhandled == 0);
  palitra_test::require_quiet(r.stats());
  REQUIRE(r.stats().completed == 1);
}

TEST_CASE("close during a close with a grace ends the grace at once",
          "[lifecycle][close][grace]") {
  watchdog w(30s);
  palitra::runner r;
  auto a = r.submit(sleep_then(60s, 1));
  auto b = r.submit(sleep_then(60s, 2));
  wait_in_flight(r, 2);
  std::atomic<bool> graceful_done{false};
  std::thread graceful([&] {
    r.close(60s);
    graceful_done = true;
  });
  REQUIRE(eventually([&] { return r.closed(); }));
  const auto t0 = steady::now();
  r.close(); // cancels now, and returns after the join
  REQUIRE(steady::now() - t0 < 10s);
  graceful.join();
  REQUIRE(graceful_done);
  REQUIRE_THROWS_AS(a.get(), palitra::runner_closed_error);
  REQUIRE_THROWS_AS(b.get(), palitra::runner_closed_error);
  palitra_test::require_quiet(r.stats());
  REQUIRE(r.stats().cancelled == 2);
}

TEST_CASE("a later close with a shorter grace shortens the grace", "[lifecycle][close][grace]") {
  watchdog w(30s);
  palitra::runner r;
  auto a = r.submit(sleep_then(60s, 1));
  wait_in_flight(r, 1);
  std::thread first([&] { r.close(60s); });
  REQUIRE(eventually([&] { return r.closed(); }));
  const auto t0 = steady::now();
  r.close(50ms);
  const auto took = steady::now() - t0;
  first.join();
  REQUIRE(took >= 50ms);
  REQUIRE(took < 10s);
  REQUIRE_THROWS_AS(a.get(), palitra::runner_closed_error);
  palitra_test::require_quiet(r.stats());
}

TEST_CASE("close with a grace on an idle runner returns at once", "[lifecycle][close][grace]") {
  watchdog w(30s);
  const int fds_before = palitra_test::open_fds();
  {
    palitra::runner r;
    REQUIRE(r.run(add(2, 3)) == 5);
    const auto t0 = steady::now();
    r.close(60s);
    REQUIRE(steady::now() - t0 < 2s);
    REQUIRE(r.closed());
    r.close(60s); // idempotent
    r.close();
    palitra_test::require_quiet(r.stats());
  }
  REQUIRE(palitra_test::fds_settled(fds_before) == fds_before);
}

TEST_CASE("a CPU-bound task sees this_task::cancelled only when the grace ends",
          "[lifecycle][close][grace]") {
  watchdog w(30s);
  palitra::runner r;
  std::atomic<bool> spinning{false};
  std::atomic<std::int64_t> close_began{0};
  auto spin = [&]() -> palitra::task<std::int64_t> {
    spinning = true;
    // Holds the loop: neither the grace timer nor a cancellation can be
    // delivered, so only cancelled()'s own reading of the deadline (E7) ends it.
    while (!palitra::this_task::cancelled()) std::this_thread::yield();
    co_return steady::now().time_since_epoch().count();
  };
  auto fut = r.submit(spin());
  REQUIRE(eventually([&] { return spinning.load(); }));
  close_began = steady::now().time_since_epoch().count();
  r.close(50ms);
  const std::int64_t saw = fut.get(); // it ended by itself, with a value
  REQUIRE(steady::duration(saw - close_began.load()) >= 50ms);
  palitra_test::require_quiet(r.stats());
  REQUIRE(r.stats().completed == 1);
}

TEST_CASE("shutdown_global_runner with a grace lets a call finish", "[lifecycle][global][grace]") {
  watchdog w(30s);
  auto fut = palitra::global_runner().submit(sleep_then(20ms, 9));
  const auto t0 = steady::now();
  palitra::shutdown_global_runner(5s);
  REQUIRE(steady::now() - t0 < 2s);
  REQUIRE(fut.get() == 9);
  REQUIRE_FALSE(palitra::is_runner_alive());
}
