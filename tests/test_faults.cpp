// Fault injection: allocation failure, thread-creation failure, fd
// exhaustion, signals interrupting every wait, very many queued calls and
// blocked callers. Each must end in a clear error or a clean result.
#include <csignal>
#include <new>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include "diag/fault.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using palitra_test::watchdog;

namespace {

palitra::task<int> leaf(int v) {
  co_await palitra::yield();
  co_return v;
}

palitra::task<int> parent(int v) {
  int a = co_await leaf(v);
  int b = co_await leaf(v);
  co_return a + b;
}

constexpr bool sanitized =
#if defined(PALITRA_TSAN) || defined(PALITRA_ASAN)
    true;
#else
    false;
#endif

} // namespace

TEST_CASE("the k-th frame allocation failing ends that call with bad_alloc", "[fault]") {
  watchdog w(60s);
  palitra::runner r;
  REQUIRE(r.run(parent(1)) == 2);
  // Fail the k-th frame allocation from now on, for each k until one run
  // goes through untouched. Which allocation k hits depends on the compiler
  // (clang may elide child frames into the parent's), so each attempt must
  // end either with bad_alloc (on the caller for the root frame, or on the
  // loop for a child) or with the right value, and the runner must survive.
  int caller_side = 0, loop_side = 0;
  for (long k = 0; k < 16; ++k) {
    const auto before = r.stats().failed;
    palitra::detail::fault::fail_frame_alloc_after(k);
    try {
      const int v = r.run(parent(1));
      REQUIRE(v == 2);
      palitra::detail::fault::fail_frame_alloc_after(-1);
      break; // this run needed fewer than k+1 frames
    } catch (const std::bad_alloc&) {
      (r.stats().failed == before ? caller_side : loop_side) += 1;
    }
  }
  palitra::detail::fault::fail_frame_alloc_after(-1);
  REQUIRE(caller_side == 1); // k = 0: the root frame, before submission
  REQUIRE(r.run(parent(2)) == 4); // the runner is unharmed
  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.failed == static_cast<unsigned>(loop_side));
}

TEST_CASE("a failed thread creation throws palitra::error and leaks nothing", "[fault]") {
  watchdog w(30s);
  const int fds = palitra_test::open_fds();
  palitra::detail::fault::fail_next_thread_create(true);
  try {
    palitra::runner r;
    FAIL("the runner started");
  } catch (const palitra::error& e) {
    REQUIRE(e.code() == std::errc::resource_unavailable_try_again);
    REQUIRE(std::string(e.what()).find("palitra::runner") != std::string::npos);
  }
  REQUIRE(palitra_test::fds_settled(fds) == fds);
  palitra::runner ok;
  REQUIRE(ok.run(leaf(3)) == 3);
}

TEST_CASE("fd exhaustion (EMFILE) at start-up throws palitra::error with the code", "[fault]") {
#if defined(PALITRA_ASAN) || defined(PALITRA_TSAN)
  // Sanitizer runtimes need spare fds of their own (UBSan's vptr check
  // probes memory through a pipe), so fd exhaustion makes them report false
  // errors. This test runs in the dev and release lanes.
  WARN("skipped under sanitizers: their runtimes need fds while RLIMIT_NOFILE is exhausted");
  return;
#endif
  watchdog w(30s);
  rlimit old{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &old) == 0);
  const int fds = palitra_test::open_fds();
  // Room for exactly one more fd: epoll_create1 succeeds, eventfd fails; then none.
  for (int room : {1, 0}) {
    // The limit applies to fd numbers: allow exactly `room` new ones above
    // the lowest free number.
    rlimit low = old;
    int probe = dup(0);
    REQUIRE(probe >= 0);
    close(probe);
    low.rlim_cur = static_cast<rlim_t>(probe + room);
    REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
    bool threw = false;
    try {
      palitra::runner r;
    } catch (const palitra::error& e) {
      threw = true;
      REQUIRE(e.code() == std::errc::too_many_files_open);
    }
    REQUIRE(setrlimit(RLIMIT_NOFILE, &old) == 0);
    REQUIRE(threw);
    REQUIRE(palitra_test::fds_settled(fds) == fds);
  }
  palitra::runner r;
  REQUIRE(r.run(leaf(4)) == 4);
}

namespace {
std::atomic<long> g_signals{0};
void on_usr1(int) { g_signals.fetch_add(1, std::memory_order_relaxed); }
} // namespace

TEST_CASE("signals interrupting every wait (EINTR) lose nothing", "[fault][signals]") {
  watchdog w(60s);
  struct sigaction sa {};
  sa.sa_handler = &on_usr1;
  sa.sa_flags = 0; // no SA_RESTART: every blocking syscall returns EINTR
  sigemptyset(&sa.sa_mask);
  struct sigaction old {};
  REQUIRE(sigaction(SIGUSR1, &sa, &old) == 0);
  {
    palitra::runner_options o;
    o.caller_spin = 0ns; // callers go straight to the futex
    o.loop_spin = 0ns;   // the loop goes straight to epoll
    palitra::runner r(o);
    pthread_t loop_thread{};
    r.run([&loop_thread]() -> palitra::task<void> {
      loop_thread = pthread_self();
      co_return;
    });
    std::atomic<bool> stop{false};
    std::vector<pthread_t> callers(4);
    std::atomic<int> registered{0};
    std::atomic<int> wrong{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([&, t] {
        callers[t] = pthread_self();
        ++registered;
        for (int i = 0; i < 300; ++i) {
          auto f = [](int v) -> palitra::task<int> {
            co_await palitra::sleep_for(std::chrono::microseconds(v % 50));
            co_return v;
          };
          if (i % 10 == 9) {
            auto slow = []() -> palitra::task<int> {
              co_await palitra::sleep_for(1s);
              co_return 0;
            };
            try {
              r.run(slow(), 1ms); // always times out
              ++wrong;
            } catch (const palitra::timeout_error&) {
            }
          } else if (r.run(f, i) != i) {
            ++wrong;
          }
        }
      });
    while (registered < 4) std::this_thread::yield();
    std::thread killer([&] {
      while (!stop.load()) {
        pthread_kill(loop_thread, SIGUSR1);
        for (pthread_t c : callers) pthread_kill(c, SIGUSR1);
        std::this_thread::sleep_for(20us);
      }
    });
    for (auto& t : ts) t.join();
    stop = true;
    killer.join();
    REQUIRE(wrong == 0);
    REQUIRE(g_signals.load() > 0);
    auto s = r.stats();
    palitra_test::require_quiet(s);
    REQUIRE(s.completed == 4 * 270 + 1); // + the call that read the loop thread
    REQUIRE(s.cancelled == 4 * 30);
  }
  sigaction(SIGUSR1, &old, nullptr);
}

TEST_CASE("100,000 calls queued at once all complete", "[fault][scale]") {
  watchdog w(120s);
  palitra::runner r;
  const int n = sanitized ? 20'000 : 100'000;
  std::vector<palitra::future<int>> fs;
  fs.reserve(n);
  for (int i = 0; i < n; ++i) fs.push_back(r.submit(leaf(i)));
  long long sum = 0;
  for (auto& f : fs) sum += f.get();
  REQUIRE(sum == static_cast<long long>(n) * (n - 1) / 2);
  palitra_test::require_quiet(r.stats());
}

TEST_CASE("2,000 blocked caller threads are all released", "[fault][scale]") {
  watchdog w(120s);
  palitra::runner r;
  const int n = sanitized ? 300 : 2000;
  std::atomic<int> done{0};
  std::vector<std::thread> ts;
  ts.reserve(n);
  for (int i = 0; i < n; ++i)
    ts.emplace_back([&, i] {
      auto f = [](int v) -> palitra::task<int> {
        co_await palitra::sleep_for(20ms);
        co_return v;
      };
      if (r.run(f, i) == i) ++done;
    });
  for (auto& t : ts) t.join();
  REQUIRE(done == n);
  palitra_test::require_quiet(r.stats());
}

TEST_CASE("fork() with calls in flight: the child gets a fresh global runner", "[fault][fork]") {
#if defined(PALITRA_TSAN)
  WARN("skipped under TSan: a multi-threaded fork child that starts threads dies (die_after_fork)");
  return;
#elif defined(PALITRA_ASAN)
  // clang 16's ASan does not lock its allocator around fork() (it installs
  // pthread_atfork handlers only from LLVM 18, llvm-project PR #75290): if
  // another thread is inside malloc at the fork, the child's first malloc
  // deadlocks. Seen once in CI (the child hung; 15 of 15 local reruns
  // passed). glibc's malloc is fork-safe, so the dev lanes keep this test.
  WARN("skipped under ASan: clang 16's allocator is not fork-safe with other threads running");
  return;
#else
  watchdog w(60s);
  REQUIRE(palitra::run(leaf(1)) == 1);
  std::atomic<bool> stop{false};
  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      while (!stop.load()) {
        auto f = []() -> palitra::task<int> {
          co_await palitra::sleep_for(100us);
          co_return 5;
        };
        if (palitra::run(f) != 5) ++wrong;
      }
    });
  std::this_thread::sleep_for(5ms);
  const pid_t pid = fork();
  if (pid == 0) {
    // Child: only this thread exists. The inherited global runner is closed;
    // the next run creates a new one.
    int ok = palitra::run(leaf(9)) == 9 ? 0 : 1;
    _exit(ok);
  }
  REQUIRE(pid > 0);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  stop = true;
  for (auto& t : ts) t.join();
  REQUIRE(wrong == 0);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
#endif
}
