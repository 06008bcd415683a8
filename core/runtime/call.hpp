// palitra — a top-level call as the loop sees it: the call record.
//
// One record per accepted call (`run`, `gather*`, `submit`, `spawn`), built
// inside the opaque storage of include/palitra/detail/call.hpp: on the
// caller's stack for a blocking call, on the heap (heap_call) otherwise. Its
// first member is the intrusive submission-queue node, so submitting
// allocates nothing.
//
// ---------------------------------------------------------------------------
// Protocol: the call's lifecycle (call_state, in state_).
//   queued  -> running   loop, accept(): popped while the runner runs; the
//                        frame is scheduled (and its timer armed).
//   queued  -> ended     loop, accept(): popped after S1 (stopping): it
//                        never starts, outcome rejected (submission.hpp I3).
//   running -> ended     loop, root_ended() inside the frame's final_suspend:
//                        outcome value | failed | cancelled; the call joins
//                        the finished list (published after resume() returns).
//   ended   -> awaiting_cancel_pop   loop, publish(): a future whose cancel
//                        node is queued (xc_queued): publish at its pop.
//   ended | awaiting_cancel_pop -> published   loop, publish(): harvest (the
//                        result into call<T>, the frame destroyed), then P1.
//                        Terminal: the loop never touches the record again.
//   ended   -> (freed)   loop, publish(): a spawned call, or a future dropped
//                        on its loop thread (mode_ future -> detached, by the
//                        loop): finish(reclaim).
// Who owns what:
//   - Before the push the submitter fills everything; the push (Q1, release)
//     hands it to the loop (acquire pop).
//   - From the pop until P1 the loop owns every field. The caller touches
//     only slot_ (waiting), state_ (a relaxed read: has the loop accepted
//     the call yet? see caller_wait.cpp, "queued calls"), and for futures xcancel_
//     and cancel_node_ (the handshake below).
//   - After P1 the owner reads the stored result and destroys the record.
// Future-cancel handshake (xcancel_): the cancel node is pushed from another
// thread and may still be queued when the task ends.
//   xc_idle -> xc_queued  (canceller, CAS): it owns cancel_node_ and pushes it.
//   xc_idle -> xc_closed  (loop, CAS, at publish): no cancel node will come.
//   xc_queued -> xc_popped (loop, at the node's pop).
// Invariants:
//   C1 exactly one of published / freed per accepted call, once.
//   C2 P1 happens only in xc_closed or xc_popped: a record is never freed
//      while its cancel node is queued.
//   C3 the frame is destroyed on the loop thread before P1 (or by the
//      owner if the call was never pushed): no caller destroys a frame that
//      ran. Only the memory of a blocking call's frame goes back to the
//      caller (parked_), to be freed into the cache it came from.
//   C4 state_ is written by the loop only (relaxed: it publishes nothing to
//      the caller; the slot's P1 does).
// Models: stress/model/palitra.pml covers blocking calls (Caller, Loop);
// C2 is checked by fuzz_ops and the mixed_load scenario.
// ---------------------------------------------------------------------------
#pragma once

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <thread>
#include <type_traits>

#include <palitra/detail/call.hpp>
#include <palitra/detail/cancel.hpp>
#include <palitra/detail/loop_hooks.hpp>
#include <palitra/task.hpp>

#include "alloc/frame_defer.hpp"
#include "wait/completion_slot.hpp"

namespace palitra::detail {

enum class call_state : std::uint8_t { queued, running, ended, awaiting_cancel_pop, published };
/// Why the loop cancelled the call (none: it was not cancelled by us).
enum class end_reason : std::uint8_t { none, timeout, cancel, close };
/// How the call ended: which stats bucket it counts in. `rejected`: accepted
/// by the gate, but the runner was stopping before the task started
/// (counted cancelled).
enum class call_outcome : std::uint8_t { none, value, failed, cancelled, rejected };

class call_record final : public queue_node, public task_waiter {
public:
  call_record(std::coroutine_handle<> frame, promise_base& p, call_mode mode,
              finish_fn finish) noexcept;
  call_record(const call_record&) = delete;
  call_record& operator=(const call_record&) = delete;

  std::coroutine_handle<> on_task_done() noexcept override;

  static call_record& of(call_record_storage& s) noexcept {
    return *std::launder(reinterpret_cast<call_record*>(s.bytes_));
  }
  static const call_record& of(const call_record_storage& s) noexcept {
    return *std::launder(reinterpret_cast<const call_record*>(s.bytes_));
  }
  /// The storage this record was built in (at its first byte: call_init).
  call_record_storage& storage() noexcept {
    return *reinterpret_cast<call_record_storage*>(this);
  }

  /// Records when, from which thread and from which CPU the call was
  /// submitted (observability: start latency, in-flight registry; the CPU
  /// feeds the loop's cross-CPU spin choice, caller_wait.cpp).
  void stamp() noexcept {
    submitted_at_ = std::chrono::steady_clock::now();
    caller_ = std::this_thread::get_id();
    cpu_ = current_cpu_tag();
  }
  call_state state() const noexcept { return state_.load(std::memory_order_relaxed); } // C4
  void set_state(call_state s) noexcept { state_.store(s, std::memory_order_relaxed); } // C4
  bool accepted() const noexcept { return state() != call_state::queued; }

  // ---- filled by the submitter before the push
  std::coroutine_handle<> frame_; // C3: nulled when the loop destroys it
  promise_base* promise_;
  call_mode mode_; // loop-owned after the push: a future dropped on its loop becomes detached
  bool has_deadline_ = false;
  stored_kind stored_ = stored_kind::nothing; // written by the loop's harvest
  std::uint16_t cpu_ = 0; // current_cpu_tag() at stamp()
  std::chrono::steady_clock::time_point deadline_{};
  finish_fn finish_;
  std::chrono::steady_clock::time_point submitted_at_{};
  std::thread::id caller_;

  // ---- loop-owned between the pop and P1
  call_record* reg_prev_ = nullptr; // registry of calls in flight
  call_record* reg_next_ = nullptr;
  call_record* finished_next_ = nullptr; // loop's list of ended, unpublished calls
  cancel_state chain_;
  union {
    timer_node timer_{}; // while the call can still run: its deadline
    // A blocking call, once published: its frame's memory, which the loop
    // parked here instead of freeing (alloc/frame_defer.hpp) and the caller
    // frees into its own thread's cache after A1. The timer is dead by then
    // (erased when the call ended; never armed for a rejected call).
    deferred_block parked_;
  };
  ready_item start_;
  end_reason reason_ = end_reason::none;
  call_outcome outcome_ = call_outcome::none;
  std::atomic<call_state> state_{call_state::queued};

  // ---- shared
  static constexpr std::uint32_t xc_idle = 0;
  static constexpr std::uint32_t xc_queued = 1;
  static constexpr std::uint32_t xc_closed = 2;
  static constexpr std::uint32_t xc_popped = 3;
  struct cancel_request : queue_node {
    call_record* op = nullptr;
  };
  completion_slot slot_;
  std::atomic<std::uint32_t> xcancel_{xc_idle};
  cancel_request cancel_node_;
};

static_assert(sizeof(call_record) <= call_record_bytes,
              "the call record outgrew its storage in include/palitra/detail/call.hpp");
static_assert(alignof(call_record) <= alignof(call_record_storage));
static_assert(std::is_trivially_destructible_v<call_record>,
              "call<T> never runs the record's destructor");

/// After A1 on a cancelled/rejected call: throws the mapped error (error.cpp).
[[noreturn]] void throw_cancelled_end(const call_record& op, const char* what);

} // namespace palitra::detail
