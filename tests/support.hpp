// palitra tests — shared helpers: an in-process watchdog, and the "nothing
// is left" checks every test that starts a runner ends with (STYLE.md).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include <palitra/palitra.hpp>

namespace palitra_test {

/// Aborts the process with a message if the scope is not left within
/// `limit` (ctest's own timeout is the outer net; this one names the hang
/// and fires sooner). PALITRA_TEST_TIMEOUT_MULTIPLIER scales it.
class watchdog {
public:
  explicit watchdog(std::chrono::seconds limit, const char* what = "test")
      : what_(what), thread_([this, limit] {
          std::unique_lock<std::mutex> lk(m_);
          if (!cv_.wait_for(lk, limit * scale(), [this] { return done_; })) {
            std::fprintf(stderr, "watchdog: '%s' still running after %llds: hang\n", what_,
                         static_cast<long long>(limit.count() * scale()));
            std::abort();
          }
        }) {}
  ~watchdog() {
    {
      std::lock_guard<std::mutex> lk(m_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  static int scale() {
    const char* m = std::getenv("PALITRA_TEST_TIMEOUT_MULTIPLIER");
    return m != nullptr ? std::max(1, std::atoi(m)) : 1;
  }

private:
  const char* what_;
  std::mutex m_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

/// Number of open fds of this process.
inline int open_fds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d) != nullptr) ++n;
    closedir(d);
  }
  return n - 3; // ".", "..", and the DIR's own fd
}

/// The fd count once it has returned to `expected`, or after 2 s (scaled
/// like the watchdog) the count it stays at. A leaked fd stays and fails the
/// caller's check; an fd that a sanitizer runtime holds for a moment (seen
/// once in the asan lane: one extra fd right after a runner's join, not
/// reproduced in 40 reruns) is given time to close.
inline int fds_settled(int expected) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2) * watchdog::scale();
  int n = open_fds();
  while (n != expected && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    n = open_fds();
  }
  return n;
}

/// The counters balance with nothing in flight.
inline void require_quiet(const palitra::runner_stats& s) {
  INFO("submitted=" << s.submitted << " completed=" << s.completed << " failed=" << s.failed
                    << " cancelled=" << s.cancelled << " in_flight=" << s.in_flight);
  REQUIRE(s.in_flight == 0);
  REQUIRE(s.submitted == s.completed + s.failed + s.cancelled);
}

/// Stats once the loop finished every call. Blocking calls are counted
/// before they are published; spawned tasks and posts are not observed by
/// anyone, so poll (bounded) until the loop is quiet.
inline palitra::runner_stats settled_stats(palitra::runner& r) {
  for (int i = 0; i < 5000; ++i) {
    auto s = r.stats();
    if (s.in_flight == 0 && s.submitted == s.completed + s.failed + s.cancelled) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return r.stats();
}

/// An exception type of the tests' own, carrying a code.
struct custom_error : std::runtime_error {
  explicit custom_error(int c) : std::runtime_error("custom " + std::to_string(c)), code(c) {}
  int code;
};

using event_log = std::vector<std::string>;

/// A coroutine parameter that logs "<name> destroyed" when the frame
/// holding it is destroyed (a moved-from marker logs nothing). The log is
/// written on the loop thread and read by the test after the blocking call.
struct marker {
  marker(event_log& l, std::string n) : log(&l), name(std::move(n)) {}
  marker(marker&& o) noexcept : log(std::exchange(o.log, nullptr)), name(std::move(o.name)) {}
  marker(const marker&) = delete;
  marker& operator=(const marker&) = delete;
  ~marker() {
    if (log != nullptr) log->push_back(name + " destroyed");
  }
  void note(const std::string& what) const { log->push_back(name + " " + what); }
  event_log* log;
  std::string name;
};

/// Counts live copies (thread-safe: frames die on either thread).
struct probe {
  explicit probe(std::atomic<int>& a) : alive(&a) { ++*alive; }
  probe(const probe& o) : alive(o.alive) { ++*alive; }
  probe& operator=(const probe&) = delete;
  ~probe() { --*alive; }
  std::atomic<int>* alive;
};

/// Sleeps 10 s (never reached: every test cancels it); logs the cancellation.
inline palitra::task<int> sleeper(marker m) {
  try {
    co_await palitra::sleep_for(std::chrono::seconds(10));
  } catch (const palitra::cancelled_error&) {
    m.note("cancelled");
    throw;
  }
  co_return -1;
}

inline palitra::task<void> void_sleeper(marker m) {
  try {
    co_await palitra::sleep_for(std::chrono::seconds(10));
  } catch (const palitra::cancelled_error&) {
    m.note("cancelled");
    throw;
  }
}

/// Sleeps 10 s holding a probe, so the test can see when its frame is gone.
inline palitra::task<int> counted_sleeper(probe p) {
  (void)p;
  co_await palitra::sleep_for(std::chrono::seconds(10));
  co_return -1;
}

} // namespace palitra_test
