// palitra — the reactor on Linux: epoll (level-triggered) + an eventfd wake.
// The contract and its protocol (I1..I8) are in reactor.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <system_error>

#include "reactor.hpp"

namespace palitra::detail {

class reactor_epoll {
public:
  /// Throws: palitra::error with the std::error_code (EMFILE, ENOMEM, ...);
  /// nothing is left open on failure.
  reactor_epoll();
  ~reactor_epoll();
  reactor_epoll(const reactor_epoll&) = delete;
  reactor_epoll& operator=(const reactor_epoll&) = delete;

  /// Registers `fd` (no interest yet). Thread: loop. Returns the OS error
  /// (EPERM for a regular file, EBADF, ENOMEM, ...); `h` stays detached then.
  std::error_code attach(io_handle& h, int fd) noexcept;
  /// Leaves the epoll set and cancels the handle's ops (I5). Call before
  /// close(fd). Thread: loop. Idempotent.
  void detach(io_handle& h) noexcept;
  /// idle|completed -> pending; never completes inline (I2). `op.handle`
  /// must be attached. Thread: loop.
  void start(io_op& op) noexcept;
  /// Asynchronous cancel (I4, I6). Thread: loop.
  void cancel(io_op& op) noexcept;
  /// I9: drop an in-flight op without completing it. Thread: loop.
  void forget(io_op& op) noexcept { ops_.forget(op); }
  /// A watch's new interest (io_in | io_out), effective for the next poll.
  void set_interest(io_op& watch, std::uint32_t interest) noexcept;
  /// Waits up to `timeout_ns` (0: never blocks; < 0: no limit) for readiness
  /// or wake(), then dispatches completions. May return early (EINTR, a
  /// stray report). Returns the number of complete() calls. Thread: loop.
  int poll(std::int64_t timeout_ns) noexcept;
  /// Makes the current or next poll() return. Any thread; async-signal-safe (I8).
  void wake() noexcept;
  /// Releases the OS resources (after the loop thread exited). Idempotent.
  void close() noexcept;

  /// OS handles held by the reactor itself (tests check nothing leaks).
  int handle_count() const noexcept { return (epfd_ >= 0) + (wakefd_ >= 0); }
  /// Started ops not completed yet; 0 means a poll(0) would dispatch nothing.
  std::size_t pending_ops() const noexcept { return ops_.pending(); }
  /// Pending ops a poll could complete or report (io_ops::active).
  std::size_t active_ops() const noexcept { return ops_.active(); }
  /// Attached handles (the wake eventfd is internal and not counted).
  std::size_t attached() const noexcept { return ops_.handles(); }
  /// epoll_wait/epoll_pwait2 calls so far (tests: a busy pass makes none).
  std::uint64_t wait_calls() const noexcept { return wait_calls_; }

private:
  std::error_code arm(io_handle& h, std::uint32_t want) noexcept;

  io_ops ops_;
  int epfd_ = -1;
  int wakefd_ = -1;
  bool pwait2_ = true; // epoll_pwait2 usable (Linux >= 5.11, not filtered)
  std::uint64_t wait_calls_ = 0;
};

} // namespace palitra::detail
