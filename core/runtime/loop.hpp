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

#include "blocking/thread_pool.hpp"
#include "runtime/call.hpp"
#include "runtime/latency_histogram.hpp"
#include "runtime/loop_anchor.hpp"
#include "reactor/fd_table.hpp"
#include "reactor/reactor.hpp"
#include "runtime/submission.hpp"
#include "runtime/submission_queue.hpp"
#include "timer/timer_heap.hpp"
#include "runtime/wait_hints.hpp"

namespace palitra::detail {

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
  /// S1 with no grace (abandon()). true for the call that moved running ->
  /// stopping.
  bool request_stop() noexcept { return sub_.request_stop(waker{this}); }

  /// grace_until_'s values besides a deadline (steady_clock ticks): no close
  /// requested yet, and a close with no grace (a deadline long past).
  static constexpr std::int64_t grace_none = 0;
  static constexpr std::int64_t grace_expired = 1;
  /// A later closer's notice that it lowered the grace (loop.cpp E5). It
  /// lives on the closer's stack until the join: the closer pushed it
  /// through G1'', so the final drain pops it before the loop exits.
  struct grace_notice : queue_node {
    grace_notice() noexcept { dispatch = &loop::dispatch_grace_notice; }
  };
  /// A closer, any thread: S1 with a grace that ends at `until` (steady_clock
  /// ticks; grace_expired: none). The first closer sets the grace and makes
  /// S1; a later one lowers it to `until` if that is earlier and pushes
  /// `notice` (E5). Either way, return and join.
  void request_stop(std::int64_t until, grace_notice& notice) noexcept;
  /// Loop thread: the stop sequence has begun cancelling (stopping), or will
  /// at the loop's next look (the gate left running with no grace, or a grace
  /// whose deadline passed): what this_task::cancelled() reports (E7).
  bool cancelling() const noexcept;
  bool accepting() const noexcept { return sub_.accepting(); }
  runner_stats stats() const noexcept;
  /// Loop thread: the registry as call_infos.
  std::vector<call_info> snapshot_calls() const;
  /// The adaptive caller budget now (spin_policy.hpp).
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
  /// Any thread: what loop-affine objects keep to reach this loop after it
  /// may be gone (loop_anchor.hpp).
  const anchor_ref& anchor() const noexcept { return anchor_; }
  /// Loop thread: handles for fds the loop does not own (wait_readable).
  fd_table& fds() noexcept { return fds_; }
  /// Loop thread: objects told when the loop exits before them (H0).
  void add_resident(loop_resident& r) noexcept;
  void remove_resident(loop_resident& r) noexcept;

  // ---- loop thread
  void schedule(ready_item& item) noexcept;
  void add_timer(timer_node& t) { timers_.push(t); }
  void remove_timer(timer_node& t) noexcept { timers_.erase(t); }
  void root_ended(call_record& op) noexcept;
  void detach(call_record& op) noexcept;
  void report_unhandled(std::exception_ptr e) noexcept;
  std::size_t timer_count() const noexcept { return timers_.size(); }
  /// The runner's to_thread pool (blocking_job.hpp). submit() from the loop
  /// thread; join() from close() after the loop thread ended.
  thread_pool& blocking_pool() noexcept { return pool_; }
  /// Completions of to_thread jobs owed to this loop (B2): counted at J1,
  /// settled at J3 or J5. The stop sequence waits for none to be owed.
  void blocking_started() noexcept { ++blocking_owed_; }
  void blocking_settled() noexcept { --blocking_owed_; }

  static void dispatch_root(queue_node* n, loop& l) noexcept;
  static void dispatch_cancel(queue_node* n, loop& l) noexcept;
  static void dispatch_grace_notice(queue_node* n, loop& l) noexcept;

private:
  static void on_root_timeout(void* ctx) noexcept;
  static void on_slow_close(void* ctx) noexcept;
  static void on_grace_end(void* ctx) noexcept;

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
  void enter_stop() noexcept;
  void end_grace() noexcept;
  void regrace() noexcept;
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
  anchor_ref anchor_; // H1-H3; outlives the loop

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
  fd_table fds_;
  loop_resident* residents_ = nullptr; // H0 (loop_anchor.hpp)
  call_record* registry_ = nullptr; // calls in flight (intrusive, doubly linked)
  call_record* finished_head_ = nullptr;
  call_record* finished_tail_ = nullptr;
  std::size_t awaiting_cancel_ = 0;
  std::size_t blocking_owed_ = 0; // to_thread completions owed (blocking_job.hpp, B2)
  bool stopping_ = false;
  bool grace_ = false; // in the grace phase (loop.cpp): gate stopping, nothing cancelled yet
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
  thread_pool pool_;
  timer_node slow_close_timer_; // armed by begin_stop when calls are in flight
  timer_node grace_timer_;      // armed only in the grace phase (E8)
  // When the grace ends, in steady_clock ticks (E5): written by closers
  // only, read by the loop at its look at S1 and at each grace notice, and
  // by this_task::cancelled() (E7).
  std::atomic<std::int64_t> grace_until_{grace_none};
  std::chrono::steady_clock::time_point drain_time_{}; // of the current batch
};

} // namespace palitra::detail
