// palitra::to_thread (include/palitra/to_thread.hpp; the job protocol J1-J5,
// B1-B4 in core/blocking/blocking_job.hpp; the pool in
// core/blocking/thread_pool.hpp).
//
// Callables that must block until the test lets them go wait on an atomic
// (wait/notify), never on a sleep; a callable that waits for its own
// cancellation polls this_task::cancelled(), as user code would. Every test
// that can hang runs under the watchdog, and every runner ends quiet: no
// call in flight, counters balanced, no pool thread left, no extra fd.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <dirent.h>
#include <fstream>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "diag/fault.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using palitra::task;
using palitra_test::custom_error;
using palitra_test::watchdog;

namespace {

/// Threads of this process now (/proc/self/task).
int thread_count() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
  }
  return n;
}

std::string this_thread_name() {
  std::ifstream f("/proc/thread-self/comm");
  std::string s;
  std::getline(f, s);
  return s;
}

/// Blocks the calling thread until `flag` is true (set + notify_all).
void wait_for_flag(const std::atomic<bool>& flag) {
  // acquire: pairs with the setter's release (set_flag).
  while (!flag.load(std::memory_order_acquire)) flag.wait(false, std::memory_order_acquire);
}
void set_flag(std::atomic<bool>& flag) {
  flag.store(true, std::memory_order_release);
  flag.notify_all();
}

/// A callable that reports it started, polls this_task::cancelled() until
/// it turns true (recording that it saw it), then blocks until released.
struct blocker {
  std::atomic<bool>* started;
  std::atomic<bool>* saw_cancel;
  std::atomic<bool>* release;
  int operator()() const {
    set_flag(*started);
    const auto limit = std::chrono::steady_clock::now() + 20s * watchdog::scale();
    while (!palitra::this_task::cancelled() && std::chrono::steady_clock::now() < limit)
      std::this_thread::sleep_for(1ms); // the polling a CPU-bound callable would do
    if (palitra::this_task::cancelled()) set_flag(*saw_cancel);
    wait_for_flag(*release);
    return 7;
  }
};

/// A blocker and its flags, for the cancellation tests.
struct blocked {
  std::atomic<bool> started{false}, saw{false}, release{false};
  blocker callable() { return {&started, &saw, &release}; }
  /// The awaiter has ended: the callable, still blocked, sees this_task::
  /// cancelled() turn true; then the test lets it go.
  void saw_cancel_then_release() {
    wait_for_flag(saw);
    REQUIRE_FALSE(release.load());
    set_flag(release);
  }
};

/// Ends a runner and checks that nothing is left of it.
void close_quiet(palitra::runner& r, int threads_before) {
  palitra_test::require_quiet(palitra_test::settled_stats(r));
  r.close();
  REQUIRE(r.stats().blocking_threads == 0);
  REQUIRE(thread_count() == threads_before);
}

} // namespace

TEST_CASE("to_thread: the value comes back from a named worker thread", "[to_thread]") {
  watchdog wd(30s, "to_thread value");
  const int fds = palitra_test::open_fds();
  const int threads = thread_count();
  {
    palitra::runner r;
    std::thread::id loop_id, worker_id;
    std::string name;
    bool cancelled_inside = true;
    const int v = r.run([&]() -> task<int> {
      loop_id = std::this_thread::get_id();
      auto f = [&] {
        worker_id = std::this_thread::get_id();
        name = this_thread_name();
        cancelled_inside = palitra::this_task::cancelled();
        return 6 * 7;
      };
      co_return co_await palitra::to_thread(f);
    });
    REQUIRE(v == 42);
    REQUIRE(worker_id != loop_id);
    REQUIRE(worker_id != std::this_thread::get_id());
    REQUIRE(name == "palitra-blk");
    REQUIRE_FALSE(cancelled_inside);
    REQUIRE_FALSE(palitra::this_task::cancelled()); // off any task and any job

    // A move-only result is moved through; the task may also be built off
    // the loop and run from sync code.
    auto p = r.run(palitra::to_thread([] { return std::make_unique<int>(5); }));
    REQUIRE(*p == 5);
    close_quiet(r, threads);
  }
  REQUIRE(palitra_test::fds_settled(fds) == fds);
}

TEST_CASE("to_thread: a void callable gives task of void", "[to_thread]") {
  watchdog wd(30s, "to_thread void");
  palitra::runner r;
  std::atomic<int> ran{0};
  auto f = [&ran] { ran.fetch_add(1, std::memory_order_relaxed); };
  static_assert(std::is_same_v<decltype(palitra::to_thread(f)), task<void>>);
  r.run([&]() -> task<void> {
    co_await palitra::to_thread(f);
    co_await palitra::to_thread(f);
  });
  REQUIRE(ran.load() == 2);
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}

TEST_CASE("to_thread: the callable's exception keeps its type", "[to_thread]") {
  watchdog wd(30s, "to_thread exception");
  palitra::runner r;
  int caught_inside = 0;
  auto throws = [] () -> int { throw custom_error(17); };
  r.run([&]() -> task<void> {
    try {
      co_await palitra::to_thread(throws);
    } catch (const custom_error& e) {
      caught_inside = e.code;
    }
  });
  REQUIRE(caught_inside == 17);
  // And it crosses to the sync caller intact as well.
  try {
    (void)r.run(palitra::to_thread(throws));
    FAIL("no exception");
  } catch (const custom_error& e) {
    REQUIRE(e.code == 17);
    REQUIRE(std::string(e.what()) == "custom 17");
  }
  auto s = palitra_test::settled_stats(r);
  palitra_test::require_quiet(s);
  REQUIRE(s.failed == 1);
}

TEST_CASE("to_thread: awaited off a loop it throws palitra error and never runs", "[to_thread]") {
  watchdog wd(30s, "to_thread off loop");
  // A coroutine type of the test's own, run on the test thread.
  struct bare {
    struct promise_type {
      bare get_return_object() noexcept { return {}; }
      std::suspend_never initial_suspend() const noexcept { return {}; }
      std::suspend_never final_suspend() const noexcept { return {}; }
      void return_void() const noexcept {}
      void unhandled_exception() const noexcept { std::terminate(); }
    };
  };
  bool ran = false;
  std::string what;
  auto f = [&ran] { ran = true; return 1; };
  [&]() -> bare {
    try {
      co_await palitra::to_thread(f);
    } catch (const palitra::error& e) {
      what = e.what();
    }
  }();
  REQUIRE_FALSE(ran);
  REQUIRE(what.find("palitra::to_thread") != std::string::npos);
  REQUIRE(what.find("not on a palitra loop thread") != std::string::npos);
}

TEST_CASE("to_thread: threads start lazily and one at a time for sequential calls",
          "[to_thread]") {
  watchdog wd(30s, "to_thread lazy");
  const int threads = thread_count();
  palitra::runner r;
  REQUIRE(thread_count() == threads + 1); // the loop thread only
  REQUIRE(r.stats().blocking_threads == 0);
  auto f = [] { return 1; };
  const int n = r.run([&]() -> task<int> {
    int sum = 0;
    for (int i = 0; i < 50; ++i) sum += co_await palitra::to_thread(f);
    co_return sum;
  });
  REQUIRE(n == 50);
  // Each call found the worker idle again (it is idle before its completion
  // reaches the loop), so no second thread was started.
  REQUIRE(r.stats().blocking_threads == 1);
  REQUIRE(thread_count() == threads + 2);
  close_quiet(r, threads);
}

TEST_CASE("to_thread: concurrent calls never run more than blocking_threads at once",
          "[to_thread]") {
  watchdog wd(60s, "to_thread bound");
  const int threads = thread_count();
  palitra::runner_options o;
  o.blocking_threads = 3;
  palitra::runner r(o);
  std::atomic<int> running{0}, most{0};
  std::atomic<bool> release{false};
  auto job = [&](int i) {
    return palitra::to_thread([&running, &most, &release, i] {
      const int now = running.fetch_add(1) + 1;
      int m = most.load();
      while (now > m && !most.compare_exchange_weak(m, now)) {
      }
      running.notify_all();
      wait_for_flag(release);
      running.fetch_sub(1);
      return i * i;
    });
  };
  std::vector<task<int>> jobs;
  for (int i = 0; i < 10; ++i) jobs.push_back(job(i));
  auto fut = r.submit(palitra::when_all(std::move(jobs)));
  // Wait until the bound is reached: three callables block at once.
  for (int v = running.load(); v < 3; v = running.load()) running.wait(v);
  REQUIRE(r.stats().blocking_threads == 3);
  REQUIRE(thread_count() == threads + 4);
  set_flag(release);
  const std::vector<int> out = fut.get();
  REQUIRE(out.size() == 10);
  for (int i = 0; i < 10; ++i) REQUIRE(out[i] == i * i);
  REQUIRE(most.load() == 3);
  REQUIRE(r.stats().blocking_threads == 3);
  close_quiet(r, threads);
}

TEST_CASE("to_thread: with_timeout resumes the awaiter while the callable blocks",
          "[to_thread][cancel]") {
  watchdog wd(60s, "to_thread with_timeout");
  const int threads = thread_count();
  palitra::runner r;
  blocked j;
  auto b = j.callable();
  bool timed_out = false;
  r.run([&]() -> task<void> {
    try {
      co_await palitra::with_timeout(palitra::to_thread(b), 20ms);
    } catch (const palitra::timeout_error&) {
      timed_out = true;
    }
  });
  // The awaiting task ended although the callable still blocks (release is
  // not set yet): it was resumed promptly, not when the callable returned.
  REQUIRE(timed_out);
  j.saw_cancel_then_release();
  close_quiet(r, threads); // joins the worker after the callable returned
}

TEST_CASE("to_thread: future cancel resumes the awaiter while the callable blocks",
          "[to_thread][cancel]") {
  watchdog wd(60s, "to_thread future cancel");
  const int threads = thread_count();
  palitra::runner r;
  blocked j;
  auto f = r.submit(palitra::to_thread(j.callable()));
  wait_for_flag(j.started);
  f.cancel();
  REQUIRE_THROWS_AS(f.get(), palitra::cancelled_error);
  j.saw_cancel_then_release();
  auto s = palitra_test::settled_stats(r);
  REQUIRE(s.cancelled == 1);
  close_quiet(r, threads);
}

TEST_CASE("to_thread: close ends the awaiter at once and waits for the callable",
          "[to_thread][cancel]") {
  watchdog wd(60s, "to_thread close");
  const int threads = thread_count();
  const int fds = palitra_test::open_fds();
  {
    palitra::runner r;
    blocked j;
    std::atomic<bool> closed{false};
    auto f = r.submit(palitra::to_thread(j.callable()));
    wait_for_flag(j.started);
    std::thread closer([&] {
      r.close();
      set_flag(closed);
    });
    // The caller is released before close() returns: the callable blocks.
    REQUIRE_THROWS_AS(f.get(), palitra::runner_closed_error);
    REQUIRE_FALSE(closed.load()); // close() joins the pool: it waits for the callable
    j.saw_cancel_then_release();
    closer.join();
    REQUIRE(r.stats().blocking_threads == 0);
    REQUIRE(thread_count() == threads);
  }
  REQUIRE(palitra_test::fds_settled(fds) == fds);
}

TEST_CASE("to_thread: a job cancelled before a worker took it never runs",
          "[to_thread][cancel]") {
  watchdog wd(60s, "to_thread cancelled in queue");
  const int threads = thread_count();
  palitra::runner_options o;
  o.blocking_threads = 1;
  palitra::runner r(o);
  blocked j;
  auto first = r.submit(palitra::to_thread(j.callable())); // occupies the only worker
  wait_for_flag(j.started);
  std::atomic<int> second_ran{0};
  auto g = [&second_ran] { second_ran.fetch_add(1); return 2; };
  auto second = r.submit(palitra::to_thread(g)); // waits in the queue
  second.cancel();
  REQUIRE_THROWS_AS(second.get(), palitra::cancelled_error);
  first.cancel();
  REQUIRE_THROWS_AS(first.get(), palitra::cancelled_error);
  j.saw_cancel_then_release();
  close_quiet(r, threads);
  REQUIRE(second_ran.load() == 0);
}

TEST_CASE("to_thread: the callable's captures survive the trip", "[to_thread][lifetime]") {
  // The g++ 12 bug (include/palitra/to_thread.hpp): a capturing closure
  // temporary in a co_await expression is copied byte for byte and
  // destroyed twice. Heap-owning captures (a long string, a short one in
  // its inline buffer, a vector, a move-only pointer) make ASan see it.
  watchdog wd(30s, "to_thread captures");
  palitra::runner r;
  const std::string long_text(100, 'x');
  const std::string short_text = "short";
  auto [a, b, c, d, e] = r.run([&]() -> task<std::tuple<std::string, std::string, std::size_t,
                                                       std::string, std::size_t>> {
#if defined(PALITRA_GCC_CO_AWAIT_TEMPORARY_BUG)
    // Rejected at compile time on this compiler; named callables instead.
    using closure = decltype([s = std::string()] { return s; });
    static_assert(!palitra::detail::to_thread_arg_ok_v<closure>);
    static_assert(palitra::detail::to_thread_arg_ok_v<closure&>);
    auto f1 = [s = long_text] { return s; };
    auto f2 = [s = short_text] { return s; };
    auto f3 = [v = std::vector<int>(1000, 3)] { return v.size() * static_cast<std::size_t>(v[999]); };
    auto f4 = [p = std::make_unique<std::string>(long_text)] { return *p + "!"; };
    auto f5 = [v = std::vector<std::string>(3, long_text)] { return v.size(); };
    std::string ra = co_await palitra::to_thread(f1);
    std::string rb = co_await palitra::to_thread(f2);
    std::size_t rc = co_await palitra::to_thread(f3);
    std::string rd = co_await palitra::to_thread(palitra::moved(f4)); // move-only
    std::size_t re = co_await palitra::to_thread(palitra::moved(f5));
#else
    std::string ra = co_await palitra::to_thread([s = long_text] { return s; });
    std::string rb = co_await palitra::to_thread([s = short_text] { return s; });
    std::size_t rc = co_await palitra::to_thread(
        [v = std::vector<int>(1000, 3)] { return v.size() * static_cast<std::size_t>(v[999]); });
    std::string rd = co_await palitra::to_thread(
        [p = std::make_unique<std::string>(long_text)] { return *p + "!"; });
    auto f5 = [v = std::vector<std::string>(3, long_text)] { return v.size(); };
    std::size_t re = co_await palitra::to_thread(palitra::moved(f5));
#endif
    co_return std::tuple{std::move(ra), std::move(rb), rc, std::move(rd), re};
  });
  REQUIRE(a == long_text);
  REQUIRE(b == short_text);
  REQUIRE(c == 3000);
  REQUIRE(d == long_text + "!");
  REQUIRE(e == 3);
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}

TEST_CASE("to_thread: captures die on the worker and lvalues are copied", "[to_thread][lifetime]") {
  watchdog wd(30s, "to_thread capture lifetime");
  palitra::runner r;
  std::atomic<int> alive{0};
  std::thread::id died_on;
  struct tracker {
    palitra_test::probe p;
    std::thread::id* died_on;
    ~tracker() { *died_on = std::this_thread::get_id(); }
  };
  std::thread::id worker;
  {
    auto f = [t = std::make_shared<tracker>(tracker{palitra_test::probe(alive), &died_on}),
              &worker] { worker = std::this_thread::get_id(); return 1; };
    REQUIRE(alive.load() == 1);
    r.run([&]() -> task<void> { co_await palitra::to_thread(f); }); // f copied
    REQUIRE(alive.load() == 1); // the copy shared the tracker; ours still holds it
  }
  REQUIRE(alive.load() == 0);
  REQUIRE(died_on == std::this_thread::get_id()); // the last owner was ours
  // Moved in: the job holds the only owner, and it dies on the worker.
  auto g = [t = std::make_shared<tracker>(tracker{palitra_test::probe(alive), &died_on}),
            &worker] { worker = std::this_thread::get_id(); return 2; };
  r.run([&]() -> task<void> { co_await palitra::to_thread(palitra::moved(g)); });
  REQUIRE(alive.load() == 0);
  REQUIRE(died_on == worker);
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}

namespace {
/// A coroutine type of the test's own that the test can destroy while it is
/// suspended (palitra's own types never do that).
struct detachable {
  struct promise_type {
    detachable get_return_object() noexcept {
      return {std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_never initial_suspend() const noexcept { return {}; }
    std::suspend_always final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> h;
};

template <class F> detachable await_in_foreign(F& f) { co_await palitra::to_thread(f); }
} // namespace

TEST_CASE("to_thread: an awaiter destroyed while its job runs lets the pool free the job",
          "[to_thread][lifetime]") {
  watchdog wd(60s, "to_thread abandoned");
  const int threads = thread_count();
  palitra::runner r;
  std::atomic<int> alive{0};
  std::atomic<bool> started{false}, release{false};
  // Pending: destroyed while the callable blocks (J3 in abandon, J4 frees).
  auto f = [p = palitra_test::probe(alive), &started, &release] {
    set_flag(started);
    wait_for_flag(release);
    return std::make_unique<int>(1); // an outcome that must be freed too
  };
  detachable d;
  r.post([&] {
    d = await_in_foreign(f);
  });
  wait_for_flag(started);
  r.post([&] { d.h.destroy(); });
  r.run([]() -> task<void> { co_return; }); // the destroy ran (post is FIFO)
  set_flag(release);
  // Finished: destroyed after the callable returned (J3 fails: J5 frees).
  std::atomic<bool> returned{false};
  auto g = [p = palitra_test::probe(alive), &returned] {
    set_flag(returned);
    return std::make_unique<int>(2);
  };
  detachable e;
  r.post([&] {
    e = await_in_foreign(g);
    wait_for_flag(returned); // on the loop: the completion cannot be popped yet
    e.h.destroy();
  });
  close_quiet(r, threads); // the loop waits for g's completion, the pool for f
  REQUIRE(alive.load() == 2); // f and g themselves (the lambdas here) still live
}

TEST_CASE("to_thread: a pool that cannot start a thread throws palitra error", "[to_thread]") {
  watchdog wd(30s, "to_thread thread failure");
  palitra::runner r;
  auto f = [] { return 3; };
  palitra::detail::fault::fail_next_thread_create(true);
  try {
    (void)r.run(palitra::to_thread(f));
    FAIL("no exception");
  } catch (const palitra::error& e) {
    REQUIRE(std::string(e.what()).find("palitra::to_thread: cannot start a thread") !=
            std::string::npos);
    REQUIRE(e.code() == std::errc::resource_unavailable_try_again);
  }
  REQUIRE(r.stats().blocking_threads == 0);
  REQUIRE(r.run(palitra::to_thread(f)) == 3); // nothing half-started
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}

TEST_CASE("to_thread: stress with cancellations racing completions", "[to_thread][stress]") {
  // Each round: a burst of short jobs under a timeout about as long as they
  // take, so J2 and J3 race both ways; the tsan lane checks the orders.
  watchdog wd(120s, "to_thread stress");
  const int threads = thread_count();
  palitra::runner_options o;
  o.blocking_threads = 4;
  palitra::runner r(o);
  std::atomic<long> ran{0};
  long values = 0, timeouts = 0;
  for (int round = 0; round < 40; ++round) {
    std::vector<task<int>> jobs;
    for (int i = 0; i < 16; ++i) {
      auto f = [&ran, i] {
        ran.fetch_add(1, std::memory_order_relaxed);
        volatile int x = 0;
        for (int k = 0; k < 2000 * (i % 4); ++k) x = x + k;
        return i;
      };
      jobs.push_back(palitra::with_timeout(palitra::to_thread(f), std::chrono::microseconds(50 * (i % 5))));
    }
    auto out = r.gather_settled(std::move(jobs));
    for (auto& x : out) {
      if (x.has_value())
        ++values;
      else
        ++timeouts;
    }
  }
  REQUIRE(values + timeouts == 40 * 16);
  INFO("values=" << values << " timeouts=" << timeouts << " ran=" << ran.load());
  close_quiet(r, threads);
  REQUIRE(ran.load() <= 40 * 16);
}
