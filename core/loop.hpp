// palitra — the event loop that runs on a runner's thread.
//
// The submission protocols (lifecycle gate, wake elision) live in
// submission.hpp; the slot in completion_slot.hpp; the per-call ownership
// and the future-cancel handshake in call.hpp; cancellation in cancel.hpp.
// Everything else here is loop-thread only.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <string>

#include <palitra/detail/loop_hooks.hpp>
#include <palitra/runner.hpp>

#include "call.hpp"
#include "latency_histogram.hpp"
#include "reactor/reactor.hpp"
#include "submission.hpp"
#include "timer_heap.hpp"

// The submission queue: the intrusive MPSC queue, or, in bench/'s
// palitra_mcqueue ablation only, moodycamel (mc_queue.hpp).
#ifndef PALITRA_SUBMISSION_QUEUE_MOODYCAMEL
#define PALITRA_SUBMISSION_QUEUE_MOODYCAMEL 0
#endif
#if PALITRA_SUBMISSION_QUEUE_MOODYCAMEL
#include "mc_queue.hpp"
#endif

namespace palitra::detail {

#if PALITRA_SUBMISSION_QUEUE_MOODYCAMEL
using submission_queue_t = mc_submission_queue;
#else
using submission_queue_t = basic_mpsc_queue<os_sync>;
#endif

/// Blocking waits of the calling thread that ended in the cross-CPU spin
/// (loop.cpp), for tests: a thread-local count costs the call nothing shared.
std::uint64_t spin_hits_this_thread() noexcept;

/// What a waiting caller reads of its loop while it waits: the adaptive
/// caller budget and its ceiling, and the loop's presence (cross-CPU spin).
/// Type-stable: blocks come from a pool that grows and never frees (loop.cpp,
/// "wait hints"), because a caller released by close() may still read its
/// block after the runner was destroyed. A runner holds its block from its
/// construction to the end of its close() (after the join), then the block
/// serves the next runner; a late reader of a reused block only misleads its
/// own heuristics for one wait, it never corrupts anything.
struct alignas(64) wait_hints {
  std::atomic<std::int64_t> caller_budget{0};  ///< ns, adaptive (loop.cpp)
  std::atomic<std::int64_t> caller_ceiling{0}; ///< ns, runner_options::caller_spin
  std::atomic<std::uint32_t> presence{0};      ///< the loop's CPU tag, 0 when away
  std::atomic<bool> taken{false};              ///< owned by a runner (the pool's flag)
  wait_hints* next_in_pool = nullptr;          ///< immutable once linked
};

/// A free block of the pool (the pool grows by one chunk when none is free),
/// its budget and ceiling set to `ceiling_ns` and its presence to 0. Any
/// thread. Throws std::bad_alloc when the pool must grow and cannot.
wait_hints& acquire_wait_hints(std::int64_t ceiling_ns);
/// The adaptive caller budget of h now (loop.cpp, "adaptive spin").
inline std::chrono::nanoseconds caller_spin(const wait_hints& h) noexcept {
  // relaxed: a heuristic value, publishes nothing.
  return std::chrono::nanoseconds(h.caller_budget.load(std::memory_order_relaxed));
}

/// Back to the pool (the memory stays: late waiters may still read it).
void release_wait_hints(wait_hints& h) noexcept;
/// Blocks ever made (tests: a create/close cycle must not grow the pool).
std::size_t wait_hints_pool_size() noexcept;

/// Owns one block of the pool from construction until release() or
/// destruction, whichever comes first (keeps the block from leaking when a
/// later member of the loop throws in its constructor).
class wait_hints_lease {
public:
  explicit wait_hints_lease(std::int64_t ceiling_ns) : h_(&acquire_wait_hints(ceiling_ns)) {}
  ~wait_hints_lease() { release(); }
  wait_hints_lease(const wait_hints_lease&) = delete;
  wait_hints_lease& operator=(const wait_hints_lease&) = delete;
  wait_hints& get() const noexcept { return *h_; }
  /// Loop owner only, after the loop thread ended. Idempotent.
  void release() noexcept {
    if (!released_) {
      released_ = true;
      release_wait_hints(*h_);
    }
  }
  bool released() const noexcept { return released_; }

private:
  wait_hints* h_; // never null; kept after release (late readers tolerate it)
  bool released_ = false;
};

class loop {
public:
  explicit loop(const runner_options& o); // throws palitra::error
  ~loop();
  loop(const loop&) = delete;
  loop& operator=(const loop&) = delete;

  /// The loop thread's body; returns after S2 and the final drain. `born`:
  /// the fork generation of the runner (a forked child never runs it).
  void run(std::uint32_t born) noexcept;

  // ---- any thread
  /// G1..G3. false if the runner is not running (nothing was pushed).
  bool submit(queue_node& n) noexcept { return sub_.submit(n, waker{this}); }
  /// G1'..G3: push regardless of the state (future cancel nodes).
  void submit_always(queue_node& n) noexcept { sub_.submit_always(n, waker{this}); }
  /// S1. true for the call that moved running -> stopping.
  bool request_stop() noexcept { return sub_.request_stop(waker{this}); }
  bool accepting() const noexcept { return sub_.accepting(); }
  runner_stats stats() const noexcept;
  /// Loop thread: the registry as call_infos.
  std::vector<call_info> snapshot_calls() const;
  /// The adaptive caller budget now (Protocol: adaptive spin, loop.cpp).
  std::chrono::nanoseconds caller_spin() const noexcept {
    // relaxed: a heuristic value, publishes nothing.
    return std::chrono::nanoseconds(hints_.get().caller_budget.load(std::memory_order_relaxed));
  }
  /// This loop's wait hints (see wait_hints); the memory is valid for the
  /// process's life, the ownership ends with close_handles().
  wait_hints& hints() const noexcept { return hints_.get(); }
  /// After the loop thread ended (runner_core::close): the reactor's handles,
  /// the wait-hint block and the timer heap's memory go back.
  void close_handles() noexcept;
  int handle_count() const noexcept { return reactor_.handle_count(); }
  /// Loop thread: the reactor, for I/O awaitables (and tests).
  reactor& io() noexcept { return reactor_; }

  // ---- loop thread
  void schedule(ready_item& item) noexcept;
  void add_timer(timer_node& t) { timers_.push(t); }
  void remove_timer(timer_node& t) noexcept { timers_.erase(t); }
  void root_ended(call_record& op) noexcept;
  void detach(call_record& op) noexcept;
  void report_unhandled(std::exception_ptr e) noexcept;
  std::size_t timer_count() const noexcept { return timers_.size(); }

  static void dispatch_root(queue_node* n, loop& l) noexcept;
  static void dispatch_cancel(queue_node* n, loop& l) noexcept;

private:
  static void on_root_timeout(void* ctx) noexcept;
  static void on_slow_close(void* ctx) noexcept;

  struct waker {
    loop* self;
    void operator()() const noexcept { self->reactor_.wake(); }
  };
  void accept(call_record& op) noexcept;
  void report_stall(std::chrono::nanoseconds d) noexcept;
  void resume(ready_item& it) noexcept;
  [[noreturn]] static void leave_forked_child() noexcept;
  void cancel_op(call_record& op, end_reason why) noexcept;
  void publish(call_record& op) noexcept;
  void publish_finished() noexcept;
  bool drain_queue() noexcept;
  void run_ready() noexcept;
  void fire_timers() noexcept;
  void idle() noexcept;
  void begin_stop() noexcept;
  void mark_running() noexcept;
  void mark_away() noexcept;
  bool try_finish_stop() noexcept;
  void bump(std::atomic<std::uint64_t>& c, std::int64_t by = 1) noexcept {
    // relaxed: single writer (the loop); readers (stats) want a value, not
    // an ordering. A plain load+store avoids a locked RMW per call.
    c.store(c.load(std::memory_order_relaxed) + static_cast<std::uint64_t>(by),
            std::memory_order_relaxed);
  }

  // ---- shared with producers
  basic_submission<os_sync, submission_queue_t> sub_;
  reactor reactor_;

  // ---- counters: written by the loop only, read by stats()
  // What waiting callers read (wait_hints): the caller budget, read by
  // every blocking call and written only when it changes, and the presence,
  // polled by spinning callers and written by the loop only when it yields,
  // sleeps, wakes or migrates. A line of its own in a static pool, so the
  // loop's counters do not bounce it and it outlives the runner.
  wait_hints_lease hints_;
  // The caller budget when hints_ was released: stats() of a closed runner
  // reports this, not whatever the block's next owner writes. -1 while open.
  std::atomic<std::int64_t> final_caller_budget_{-1};
  // The idle loop's adaptive budget (ns), the loop's own, mirrored for stats().
  alignas(64) std::atomic<std::int64_t> loop_budget_;
  std::atomic<std::uint64_t> submitted_{0}, completed_{0}, failed_{0}, cancelled_{0},
      in_flight_{0}, iterations_{0}, caller_wakes_{0}, queue_depth_{0}, max_queue_depth_{0}, stalls_{0};
  latency_histogram start_latency_;

  // ---- loop-owned
  ready_item* ready_head_ = nullptr;
  ready_item* ready_tail_ = nullptr;
  timer_heap timers_;
  call_record* registry_ = nullptr; // calls in flight (intrusive, doubly linked)
  call_record* finished_head_ = nullptr;
  call_record* finished_tail_ = nullptr;
  std::size_t awaiting_cancel_ = 0;
  bool stopping_ = false;
  std::uint32_t born_ = 0; // fork generation of the runner (leave_forked_child)
  std::uint32_t cpu_ = 0;        // the loop's CPU tag as of its last mark_running()
  std::uint32_t advertised_ = 0; // what it last stored in hints_.presence
  // Blocking calls of the last non-empty drain whose caller was on the
  // loop's CPU / on another one (cross-CPU spin: the idle phase polls
  // without yielding only when every waiter is remote).
  std::uint32_t local_waiters_ = 0;
  std::uint32_t remote_waiters_ = 0;

  // ---- options (immutable after construction)
  std::chrono::nanoseconds loop_spin_;
  std::chrono::nanoseconds stall_threshold_;
  std::chrono::nanoseconds close_warning_;
  std::function<void(std::exception_ptr)> on_unhandled_;
  std::function<void(std::chrono::nanoseconds)> on_stall_;
  std::function<void(const std::vector<call_info>&)> on_slow_close_;
  timer_node slow_close_timer_; // armed by begin_stop when calls are in flight
  std::chrono::steady_clock::time_point drain_time_{}; // of the current batch
};

} // namespace palitra::detail
