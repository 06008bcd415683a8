// palitra — runner_core: what a runner owns (loop, thread) and its
// process-lifecycle state.
//
// ---------------------------------------------------------------------------
// Protocol: the runner lifecycle (states named here, derived from the fields
// below rather than stored)
//   starting  -> running   constructor: the loop thread stores started_ (L1)
//                          and the constructor returns only after seeing it.
//   running   -> closing   request_stop() (S1, submission.hpp), any thread:
//                          close(), close(grace), abandon(), or the global
//                          runner's exit handler. From here every
//                          submission is refused and the loop cancels every
//                          call (loop.cpp, stop sequence), at once or, after
//                          close(grace), when the grace ends (loop.cpp
//                          grace, E5-E8).
//   closing   -> closing   a later close() or close(grace) lowers the grace
//                          (never raises it) and tells the loop (L4), then
//                          joins like the first.
//   closing   -> joined    close(), under join_mutex_: joins the thread (the
//                          loop passed S2 and its final drain, so no call is
//                          left and no code of any call runs any more), joins
//                          the to_thread pool (a callable still running is
//                          waited for: blocking_job.hpp B4), then releases
//                          the reactor, the wait-hint block and the timer
//                          memory (L2). Concurrent closers wait on the
//                          mutex and return after the join too.
//   closing   -> abandoned abandon(), on the loop thread inside exit(): the
//                          thread cannot join itself; it is never joined.
//   any       -> inherited in a forked child (born_ != fork_generation()):
//                          the thread does not exist there; close() and the
//                          destructor return at once, every entry throws
//                          runner_closed_error, nothing is released (L3).
// Invariants:
//   L1 started_ is a member, not a constructor local: the loop thread may
//      still be inside notify_one() when the constructor has returned.
//   L2 Only the thread that joined releases; joined_ and abandoned_ are
//      written under join_mutex_, so a close() racing an abandon() sees one.
//   L3 A runner's id_ is unique in the process and never reused; checks
//      that must survive the runner (reentrancy) compare ids, not addresses.
//   L4 Every closer's grace notice lives on its own stack until its close()
//      returns, which is after the join: the notice went through G1'', so the
//      loop popped it before it exited. (After an abandon() the loop never
//      runs again and nothing reads the queue that may still hold it.)
// ---------------------------------------------------------------------------
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>

#include "runtime/loop.hpp"

namespace palitra::detail {

/// Incremented in every forked child (pthread_atfork); a runner created in
/// another generation is an inherited one.
std::uint32_t fork_generation() noexcept;

class runner_core {
public:
  explicit runner_core(const runner_options& o); // starts the thread
  ~runner_core();

  bool inherited() const noexcept { return born_ != fork_generation(); }
  std::uint32_t born() const noexcept { return born_; }
  std::uint64_t id() const noexcept { return id_; }
  bool closed() const noexcept { return inherited() || !loop_.accepting(); }
  /// close() with a grace that ends at `grace_until` (steady_clock ticks;
  /// loop::grace_expired: none, as close()).
  void close(std::int64_t grace_until = loop::grace_expired);
  /// exit() on the loop thread itself: stop accepting, do not join.
  void abandon() noexcept;

  loop loop_;

private:
  std::uint32_t born_;
  std::uint64_t id_;
  std::atomic<std::uint32_t> started_{0}; // L1
  std::mutex join_mutex_;                 // L2
  std::thread thread_;
  bool joined_ = false;    // guarded by join_mutex_
  bool abandoned_ = false; // guarded by join_mutex_
};

} // namespace palitra::detail
