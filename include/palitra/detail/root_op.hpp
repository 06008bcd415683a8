// palitra — a top-level call as the loop sees it.
//
// One root_op per accepted call (`run`, `gather*`, `submit`, `spawn`). For a
// blocking call it lives on the caller's stack; for `submit` and `spawn` on
// the heap. Its first member is the intrusive submission-queue node, so
// submitting allocates nothing.
//
// Ownership (who may touch which field, and when):
//   - Before the push: the submitting thread fills frame_, promise_, mode_,
//     deadline. The push (release) hands them to the loop (acquire pop).
//   - From the pop until P1 (slot publish): the loop owns every field;
//     the caller touches only slot_ (waiting on it) and, for futures,
//     xcancel_ / cancel_node_ (the handshake below).
//   - Just before P1 the loop harvests the call (finish_(harvest)): the
//     result or exception moves out of the promise into the typed storage
//     of the op (call_result below), and the frame is destroyed, there on
//     the loop. So a call's frame, its parameters included, dies when its
//     coroutine ends, and never after close() returned (DESIGN.md §3 item 3,
//     §4): no caller ever destroys a frame that ran.
//   - After P1: the caller (or future) owns the op again and reads only the
//     stored result; the loop never touches the op (completion_slot.hpp I3).
//   - Spawned ops, and futures destroyed unwaited on the loop thread, are
//     never published: the loop reclaims them itself (finish_(reclaim)).
//
// Future cancellation handshake (xcancel_), needed because the cancel node
// is pushed from another thread and may still sit in the queue when the task
// finishes:
//   xc_idle -> xc_queued  (any thread, CAS): the canceller owns cancel_node_
//                          and pushes it; the loop must pop it before P1.
//   xc_idle -> xc_closed  (loop, CAS when the task ended): no cancel node
//                          will come; publish now.
//   xc_queued, task ended (loop): publish when the cancel node is popped.
// Invariant: P1 happens only in xc_closed or after the cancel node's pop, so
// the op is never freed while its cancel node is queued.
// Model: stress/model/palitra.pml covers blocking ops only; G1' and this
// handshake are checked by the fuzz_ops target and the mixed_load scenario.
#pragma once

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <new>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>

#include <palitra/detail/cancel.hpp>
#include <palitra/detail/completion_slot.hpp>
#include <palitra/detail/loop_hooks.hpp>
#include <palitra/task.hpp>

namespace palitra::detail {

/// A submission-queue entry; `dispatch` runs on the loop thread when popped.
struct queue_node {
  queue_node* next = nullptr;
  void (*dispatch)(queue_node* self, loop& l) noexcept = nullptr;
};

enum class root_mode : std::uint8_t { blocking, future, spawned };
/// What root_op::finish_ is asked to do (loop thread).
enum class finish_step : std::uint8_t {
  harvest, ///< move the result out of the promise, destroy the frame (before P1)
  reclaim  ///< destroy the frame if still there, and free the op (never published)
};
/// Which member of call_result holds something (set by harvest).
enum class stored_kind : std::uint8_t { nothing, value, error };
/// Why the loop cancelled the call (none: it was not cancelled by us).
enum class end_reason : std::uint8_t { none, timeout, cancel, close };
/// Which stats bucket the call ended in; `rejected` = accepted by the gate
/// but the runner was closing before the task started (counted cancelled).
enum class end_kind : std::uint8_t { running, value, failed, cancelled, rejected };

class root_op : public queue_node, public task_waiter {
public:
  root_op(std::coroutine_handle<> frame, promise_base& p, root_mode mode) noexcept;
  root_op(const root_op&) = delete;
  root_op& operator=(const root_op&) = delete;

  std::coroutine_handle<> on_task_done() noexcept override;

  void set_deadline(std::chrono::steady_clock::time_point d) noexcept {
    has_deadline_ = true;
    deadline_ = d;
  }
  /// Records when, from which thread and from which CPU the call was
  /// submitted (observability: start latency, in-flight registry; the CPU
  /// feeds the loop's cross-CPU spin choice, loop.cpp).
  void stamp() noexcept {
    submitted_at_ = std::chrono::steady_clock::now();
    caller_ = std::this_thread::get_id();
    cpu_ = current_cpu_tag();
  }

  // ---- filled by the submitter before the push
  std::coroutine_handle<> frame_;
  promise_base* promise_;
  root_mode mode_;
  bool has_deadline_ = false;
  // Written by harvest (loop, before P1), read by the owner after A1; in the
  // padding before deadline_, like cpu_.
  stored_kind stored_ = stored_kind::nothing;
  std::uint16_t cpu_ = 0; // current_cpu_tag() at stamp(); in the padding before deadline_
  std::chrono::steady_clock::time_point deadline_{};
  /// Set by the typed owner (call_result<T>): harvest or reclaim (finish_step).
  void (*finish_)(root_op&, finish_step) noexcept = nullptr;
  std::chrono::steady_clock::time_point submitted_at_{};
  std::thread::id caller_;

  // ---- loop-owned between the pop and P1
  root_op* reg_prev_ = nullptr; // registry of calls in flight
  root_op* reg_next_ = nullptr;
  root_op* finished_next_ = nullptr; // loop's list of ended, unpublished ops
  cancel_state chain_;
  timer_node timer_;
  ready_item start_;
  end_reason reason_ = end_reason::none;
  end_kind kind_ = end_kind::running; // read by the caller after A1
  bool started_ = false;
  bool detached_ = false; // future destroyed unwaited on the loop thread
  bool cancel_popped_ = false;
  // Here, in the padding after the flags, not at the end: that keeps
  // heap_root<int> at 256 bytes, inside mimalloc's 256-byte size class
  // (bench/inflight.cpp measured 52 B per in-flight call more at 264).
  bool awaiting_cancel_pop_ = false; // loop-owned: ended, publish at the pop
  // Shared, also in that padding: a hint for the waiting caller (loop.cpp,
  // "queued calls"), set by the loop when it pops the op, read by the caller
  // while it yields. relaxed both ways: it publishes nothing (the slot
  // does), and the loop writes it before P1 like every other field (I3).
  std::atomic<bool> accepted_{false};

  // ---- shared
  static constexpr std::uint32_t xc_idle = 0;
  static constexpr std::uint32_t xc_queued = 1;
  static constexpr std::uint32_t xc_closed = 2;
  struct cancel_request : queue_node {
    root_op* op = nullptr;
  };
  completion_slot slot_;
  std::atomic<std::uint32_t> xcancel_{xc_idle};
  cancel_request cancel_node_;
};

/// The typed part of a call: where harvest puts the result, so that the
/// frame can die on the loop before P1. `stored_` (root_op) tells which
/// member is alive. Blocking calls keep one on the caller's stack; futures
/// and spawned tasks in heap_root (runner.hpp), which sets its own finish_
/// to add the reclaim step.
template <class T> class call_result : public root_op {
public:
  using value_type = std::conditional_t<std::is_void_v<T>, std::monostate, T>;
  call_result(std::coroutine_handle<promise<T>> h, root_mode m) noexcept
      : root_op(h, h.promise(), m) {
    finish_ = [](root_op& op, finish_step) noexcept { harvest(op); };
  }
  ~call_result() {
    if (stored_ == stored_kind::value) value_.~value_type();
    else if (stored_ == stored_kind::error) error_.~exception_ptr();
    // Still here only if the call was never pushed (a rejected submit): no
    // code of it ran.
    if (frame_) frame_.destroy();
  }
  call_result(const call_result&) = delete;
  call_result& operator=(const call_result&) = delete;

  /// After A1, for a call that ended by itself (end_kind value or failed):
  /// the value, or the task's own exception rethrown.
  value_type take() {
    if (stored_ == stored_kind::error) std::rethrow_exception(error_);
    return std::move(value_);
  }

  /// finish_step::harvest (loop thread, before P1): the result (moved, never
  /// copied: guarantee 5) or the exception into this op, then the frame dies.
  static void harvest(root_op& op) noexcept {
    auto& self = static_cast<call_result&>(op);
    if (self.kind_ == end_kind::value || self.kind_ == end_kind::failed) {
      auto& p = std::coroutine_handle<promise<T>>::from_address(self.frame_.address()).promise();
      if (!p.failed()) {
        try {
          ::new (static_cast<void*>(&self.value_)) value_type(p.take_result());
          self.stored_ = stored_kind::value;
        } catch (...) {
          // The result's move constructor threw: the call fails with that.
          ::new (static_cast<void*>(&self.error_)) std::exception_ptr(std::current_exception());
          self.stored_ = stored_kind::error;
          self.kind_ = end_kind::failed;
        }
      } else {
        ::new (static_cast<void*>(&self.error_)) std::exception_ptr(p.exception());
        self.stored_ = stored_kind::error;
      }
    }
    std::exchange(self.frame_, {}).destroy();
  }

private:
  union {
    value_type value_;
    std::exception_ptr error_;
  };
};

} // namespace palitra::detail
