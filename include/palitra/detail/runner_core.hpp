// palitra — the non-template entry points that runner's templates call.
// The runner core (loop, reactor, thread, gate) is defined in core/ only.
#pragma once

#include <chrono>

#include <palitra/detail/root_op.hpp>

namespace palitra::detail {

class runner_core;
/// What a waiting caller reads of its loop (core/loop.hpp): lives in a
/// static pool, so it outlives the runner.
struct wait_hints;

/// Gate + push + wake elision. Throws runner_closed_error (naming `what`)
/// when the runner is closed, closing, or inherited across fork(); nothing
/// ran then and the op is untouched.
void submit_root(runner_core& c, root_op& op, const char* what);
/// Push an arbitrary node (post). Same gate and errors as submit_root.
void submit_node(runner_core& c, queue_node& n, const char* what);
/// future::cancel: request cancellation of a submitted op (any thread).
void request_cancel(runner_core& c, root_op& op) noexcept;
/// A future dropped unwaited on the loop thread: the loop reclaims the op.
void detach_on_loop(runner_core& c, root_op& op) noexcept;

bool on_loop_thread(const runner_core& c) noexcept;
/// True in a forked child for a runner created before the fork.
bool inherited(const runner_core& c) noexcept;
/// The adaptive caller spin budget now (core/loop.cpp, "adaptive spin").
std::chrono::nanoseconds caller_spin(const wait_hints& h) noexcept;
/// What a future keeps so that it can wait without touching its runner,
/// which may be destroyed as soon as the call is published (close() then
/// ~runner): the wait hints, the fork generation the runner was born in, and
/// the runner's id (unique in the process, never reused: an address could be
/// reused by a later runner and turn a reentrancy check into a false alarm).
struct wait_ref {
  wait_hints* hints = nullptr;
  std::uint32_t born = 0;
  std::uint64_t runner_id = 0;
};
/// Take it while c is certainly alive: before the submission.
wait_ref wait_ref_of(const runner_core& c) noexcept;
/// True in a forked child for a runner born before the fork; reads no runner.
bool inherited(const wait_ref& w) noexcept;
/// Throws reentrancy_error on the loop thread of w's runner (by id) and
/// runner_closed_error in a forked child (by w's generation); reads no runner.
void check_blocking_wait(const wait_ref& w, const char* what);
/// Throws reentrancy_error on the loop thread of w's runner (by id).
void check_not_loop_thread(const wait_ref& w, const char* what);
/// Wait until op's slot is published (A1) -- a blocking call (run, gather)
/// from its submit stamp `since`, or future::get from now: the cross-CPU
/// spin while the loop runs on another CPU, then the slot's yield phase and
/// sleep (core/loop.cpp, "cross-CPU spin", "adaptive spin"); adapts the
/// caller budget. Touches only op and `h`, never the runner, so the runner
/// may be destroyed once the slot is published (close() then ~runner).
/// `cpu_tag`: current_cpu_tag() of this thread, recently read (a blocking
/// call's stamp took one).
void await_slot(wait_hints& h, root_op& op, std::chrono::steady_clock::time_point since,
                std::uint32_t cpu_tag) noexcept;

/// After A1 on a cancelled/rejected op: throws the mapped error.
[[noreturn]] void throw_cancelled_end(const root_op& op, const char* what);

} // namespace palitra::detail
