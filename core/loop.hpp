// palitra — the event loop that runs on a runner's thread.
//
// ---------------------------------------------------------------------------
// Protocol 1: the lifecycle gate (gate_). One 64-bit word:
//   bits 0-1: lifecycle state   gate_running -> gate_stopping -> gate_stopped
//   bits 2- : producers inside the gate (between G1 and G3)
//   G1 producer (submit): fetch_add(one) (acquire, pairs with R1/S1: a
//      producer that saw running may use the loop). If the state it read is
//      not running, fetch_sub and throw runner_closed_error: nothing ran.
//   G2 producer: push the node, then the wake check (Protocol 2).
//   G3 producer: fetch_sub(one) (release: its push and wake happen before
//      the loop's S2 reads the count 0).
//   S1 close(), any thread: CAS running -> stopping, then wake the loop.
//   S2 loop: once stopping, nothing in flight, and producers == 0:
//      CAS (stopping, 0) -> stopped (acq_rel). After S2 no producer can
//      pass G1, and every producer that passed it has finished G2, so one
//      last drain sees every accepted submission.
//   future::cancel pushes its cancel node through G1' (fetch_add without
//   the state check): the op it cancels is still in flight, so the loop
//   cannot be past S2 before that node is popped (root_op.hpp).
// Invariants: I1 no push after the final drain. I2 no wake-fd write after
// the loop thread exited (writers are counted producers). I3 a submission
// accepted by G1 ends exactly once (start or rejection).
//
// Protocol 2: wake elision (armed_), libuv/folly style.
//   W1 loop, about to block: armed_ = 1 (seq_cst), then re-check the queue
//      (seq_cst) and the gate; if anything is there: armed_ = 0, no block.
//   W2 producer, after its push: if armed_ (seq_cst load) is 1 and its
//      exchange(0) returned 1, it alone writes the wake fd (one write per
//      sleep). W1's store->load and W2's push->load form a Dekker pair: with
//      all four seq_cst, either the loop sees the node or the producer sees
//      armed_ == 1. Under load the loop never arms, and a call costs the
//      producer one plain load: no syscall.
//   W3 loop, after the reactor returned: armed_ = 0 (relaxed: a producer
//      that still reads 1 writes one superfluous, harmless wake).
// ---------------------------------------------------------------------------
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <string>

#include <palitra/detail/loop_hooks.hpp>
#include <palitra/detail/root_op.hpp>
#include <palitra/runner.hpp>

#include "mpsc_queue.hpp"
#include "reactor.hpp"
#include "timer_heap.hpp"

namespace palitra::detail {

class loop {
public:
  static constexpr std::uint64_t gate_running = 0;
  static constexpr std::uint64_t gate_stopping = 1;
  static constexpr std::uint64_t gate_stopped = 2;
  static constexpr std::uint64_t gate_state_mask = 3;
  static constexpr std::uint64_t gate_one = 4;

  explicit loop(const runner_options& o); // throws palitra::error
  loop(const loop&) = delete;
  loop& operator=(const loop&) = delete;

  /// The loop thread's body; returns after S2 and the final drain.
  void run() noexcept;

  // ---- any thread
  /// G1..G3. false if the runner is not running (nothing was pushed).
  bool submit(queue_node& n) noexcept;
  /// G1'..G3: push regardless of the state (future cancel nodes).
  void submit_always(queue_node& n) noexcept;
  /// S1. true for the call that moved running -> stopping.
  bool request_stop() noexcept;
  bool accepting() const noexcept {
    // acquire: pairs with S1/S2 so a caller that sees closed also sees why.
    return (gate_.load(std::memory_order_acquire) & gate_state_mask) == gate_running;
  }
  runner_stats stats() const noexcept;
  std::chrono::nanoseconds caller_spin() const noexcept { return caller_spin_; }
  void close_handles() noexcept { reactor_.close(); }
  int handle_count() const noexcept { return reactor_.handle_count(); }

  // ---- loop thread
  void schedule(ready_item& item) noexcept;
  void add_timer(timer_node& t) { timers_.push(t); }
  void remove_timer(timer_node& t) noexcept { timers_.erase(t); }
  void root_ended(root_op& op) noexcept;
  void detach(root_op& op) noexcept;
  void report_unhandled(std::exception_ptr e) noexcept;
  std::size_t timer_count() const noexcept { return timers_.size(); }

  static void dispatch_root(queue_node* n, loop& l) noexcept;
  static void dispatch_cancel(queue_node* n, loop& l) noexcept;

private:
  static void on_root_timeout(void* ctx) noexcept;

  void wake_if_armed() noexcept;
  void accept(root_op& op) noexcept;
  void cancel_op(root_op& op, end_reason why) noexcept;
  void publish(root_op& op) noexcept;
  void publish_finished() noexcept;
  bool drain_queue() noexcept;
  void run_ready() noexcept;
  void fire_timers() noexcept;
  void idle() noexcept;
  void begin_stop() noexcept;
  bool try_finish_stop() noexcept;
  std::uint64_t producers() const noexcept;
  void bump(std::atomic<std::uint64_t>& c, std::int64_t by = 1) noexcept {
    // relaxed: single writer (the loop); readers (stats) want a value, not
    // an ordering. A plain load+store avoids a locked RMW per call.
    c.store(c.load(std::memory_order_relaxed) + static_cast<std::uint64_t>(by),
            std::memory_order_relaxed);
  }

  // ---- shared with producers
  std::atomic<std::uint64_t> gate_{gate_running};
  mpsc_queue queue_;
  std::atomic<std::uint32_t> armed_{0};
  reactor reactor_;
  std::atomic<std::uint64_t> wakeups_{0};

  // ---- counters: written by the loop only, read by stats()
  std::atomic<std::uint64_t> submitted_{0}, completed_{0}, failed_{0}, cancelled_{0},
      in_flight_{0}, iterations_{0};

  // ---- loop-owned
  ready_item* ready_head_ = nullptr;
  ready_item* ready_tail_ = nullptr;
  timer_heap timers_;
  root_op* registry_ = nullptr; // calls in flight (intrusive, doubly linked)
  root_op* finished_head_ = nullptr;
  root_op* finished_tail_ = nullptr;
  std::size_t awaiting_cancel_ = 0;
  bool stopping_ = false;

  // ---- options (immutable after construction)
  std::chrono::nanoseconds caller_spin_;
  std::chrono::nanoseconds loop_spin_;
  std::function<void(std::exception_ptr)> on_unhandled_;
};

} // namespace palitra::detail
