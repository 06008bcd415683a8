// palitra — the scripted reactor for deterministic tests (contract:
// reactor.hpp). No OS resources: a test sets each handle's readiness level
// (set_ready) and observes the calls the code under test made. Readiness is
// level-triggered, as epoll's is: a handle stays ready until the script says
// otherwise, so one-shot ops complete once per start and watches report on
// every poll. poll() never blocks; a poll that would have slept records its
// timeout instead. Compiled into the test binary only (tests/CMakeLists.txt).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <system_error>
#include <vector>

#include "reactor.hpp"

namespace palitra::detail {

class reactor_fake {
public:
  // ---- the contract (same declarations and meaning as reactor_epoll)
  std::error_code attach(io_handle& h, int fd) noexcept;
  void detach(io_handle& h) noexcept;
  void start(io_op& op) noexcept;
  void cancel(io_op& op) noexcept;
  void forget(io_op& op) noexcept { ops_.forget(op); }
  void set_interest(io_op& watch, std::uint32_t interest) noexcept;
  int poll(std::int64_t timeout_ns) noexcept;
  void wake() noexcept;
  void close() noexcept { closed_ = true; }
  int handle_count() const noexcept { return 0; }
  std::size_t pending_ops() const noexcept { return ops_.pending(); }
  /// Pending ops a poll could complete or report (io_ops::active).
  std::size_t active_ops() const noexcept { return ops_.active(); }
  std::size_t attached() const noexcept { return ops_.handles(); }

  // ---- the script
  /// `h` reports `events` (io_* bits) on every poll from now on; 0: quiet.
  void set_ready(io_handle& h, std::uint32_t events) noexcept;
  /// The next start() fails with `ec` (it completes on the next poll, I2).
  void fail_next_start(std::error_code ec) noexcept { fail_next_ = ec; }

  // ---- what the code under test did (loop thread, except wakes())
  struct call_counts {
    std::size_t attach = 0, detach = 0, start = 0, cancel = 0, set_interest = 0;
    std::size_t poll = 0;
    std::size_t sleeps = 0; ///< polls that would have blocked
  };
  const call_counts& calls() const noexcept { return calls_; }
  /// The timeout of the last poll that would have blocked.
  std::int64_t last_sleep_ns() const noexcept { return last_sleep_ns_; }
  std::size_t wakes() const noexcept {
    // relaxed: a count for tests, read after the threads that wake joined.
    return wakes_.load(std::memory_order_relaxed);
  }

private:
  struct entry {
    io_handle* h;
    std::uint32_t level;
  };
  entry* find(io_handle& h) noexcept;

  io_ops ops_;
  std::vector<entry> handles_;
  call_counts calls_;
  std::int64_t last_sleep_ns_ = 0;
  std::error_code fail_next_;
  std::atomic<bool> woken_{false};
  std::atomic<std::size_t> wakes_{0};
  bool closed_ = false;
};

} // namespace palitra::detail
