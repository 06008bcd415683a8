// palitra — a to_thread job as the pool and the loop see it: the record.
//
// Built in the opaque storage of include/palitra/detail/blocking.hpp, first
// member the intrusive queue node that carries the completion back to the
// loop, so finishing a job allocates nothing.
//
// ---------------------------------------------------------------------------
// Protocol: who owns a job (job_state, in state_).
//   idle     -> pending   J1 loop, blocking_submit(): a release store, then
//                         the pool's work queue takes it; the worker's
//                         acquire load at pickup sees the callable, home_
//                         and deadline_. The loop counts one completion owed.
//   pending  -> done      J2 worker, after the callable returned or threw
//                         (CAS): the outcome is stored; the worker pushes
//                         the completion node through G1' (submit_always)
//                         and never touches the job again.
//   pending  -> detached  J3 loop, blocking_cancel()/abandon() (CAS): the
//                         awaiter let go (cancelled, or its frame destroyed).
//                         The owed completion is settled at once.
//   detached -> (freed)   J4 worker: at pickup (the callable never runs) or
//                         when J2's CAS fails (the outcome is dropped); the
//                         worker frees the job and pushes nothing.
//   done     -> (popped)  J5 loop, the completion node's dispatch: settles
//                         the owed completion; calls done(ctx) (the awaiter
//                         owns the job again and frees it at its end), or,
//                         if the awaiter was destroyed meanwhile (done_ is
//                         null), frees the job.
// Who owns what:
//   - idle: the builder (the awaiter, or the task frame before it starts).
//   - pending: the worker owns the typed part (callable, outcome); the loop
//     owns done_/ctx_. J2 and J3 race on state_ alone.
//   - done: the loop (the outcome was published by the push, Q1).
//   - detached: the worker, wholly.
// Invariants:
//   B1 exactly one of J2, J3 wins for a submitted job; exactly one thread
//      frees it (the worker after J4, the loop after J5, the awaiter after
//      done(ctx)), once.
//   B2 a completion node is pushed only after J2 won, so only while the
//      loop still counts it owed: the loop cannot pass its final drain
//      (loop.cpp, E1) before the node is popped, and the push is a counted
//      producer's (G1', submission.hpp I2).
//   B3 done(ctx) runs on the loop, from a queue dispatch, never inside the
//      awaiter's own await_suspend or a cancellation hook: the awaiter is
//      resumed through the run queue (cancel.hpp T2).
//   B4 the loop never waits for a detached job: close() joins the workers
//      after the loop thread ended, so a callable still running makes
//      close() wait for it, and nothing of the job reaches the loop.
// Checked by tests/test_to_thread.cpp ("to_thread:" cases; the races under
// the tsan lane).
// ---------------------------------------------------------------------------
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <new>
#include <type_traits>

#include <palitra/detail/blocking.hpp>
#include <palitra/detail/call.hpp>

namespace palitra::detail {

enum class job_state : std::uint8_t { idle, pending, done, detached };

struct blocking_record final : queue_node {
  static blocking_record& of(blocking_record_storage& s) noexcept {
    return *std::launder(reinterpret_cast<blocking_record*>(s.bytes_));
  }
  blocking_record_storage& storage() noexcept {
    return *reinterpret_cast<blocking_record_storage*>(this);
  }

  // ---- written before J1, read-only afterwards (published by the enqueue)
  const blocking_ops* ops_ = nullptr;
  loop* home_ = nullptr;
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();

  // ---- loop-owned
  blocking_done_fn done_ = nullptr; // null: nobody waits any more (J5 frees)
  void* ctx_ = nullptr;

  // ---- shared
  std::atomic<job_state> state_{job_state::idle};
};

static_assert(sizeof(blocking_record) <= blocking_record_bytes,
              "the job record outgrew its storage in include/palitra/detail/blocking.hpp");
static_assert(alignof(blocking_record) <= alignof(blocking_record_storage));
static_assert(std::is_trivially_destructible_v<blocking_record>,
              "the typed job never runs the record's destructor");

} // namespace palitra::detail
