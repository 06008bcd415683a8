// palitra — the reactor contract: what the loop needs from the operating
// system. One implementation file per backend (reactor_epoll.cpp on Linux;
// reactor_kqueue.cpp and reactor_iocp.cpp are not written yet); the build
// system picks the file, so this header has no platform #if.
//
// Completion-shaped on purpose: wait() blocks until the backend has
// something to report or wake() was called, so IOCP's completion packets fit
// the same shape as epoll readiness. (Socket operations join this contract
// with the I/O issue: start_op / cancel_op / completed ops from wait().)
#pragma once

#include <cstdint>

namespace palitra::detail {

class reactor {
public:
  /// Throws palitra::error with the std::error_code (EMFILE, ENOMEM, ...);
  /// nothing is left open on failure.
  reactor();
  ~reactor();
  reactor(const reactor&) = delete;
  reactor& operator=(const reactor&) = delete;

  /// Loop thread: block until wake(), an OS event, or `timeout_ns` (< 0:
  /// no timeout; 0: poll). EINTR returns early; the loop just goes round.
  void wait(std::int64_t timeout_ns) noexcept;

  /// Any thread: make the current or next wait() return. Async-signal-safe.
  void wake() noexcept;

  /// Release the OS resources (after the loop thread exited). Idempotent.
  void close() noexcept;

  /// Number of OS handles held (tests check nothing leaks).
  int handle_count() const noexcept;

private:
  int epfd_ = -1;
  int wakefd_ = -1;
  bool pwait2_ = true; // epoll_pwait2 available (Linux ≥ 5.11)
};

} // namespace palitra::detail
