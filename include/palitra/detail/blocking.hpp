// palitra — the wall between to_thread's typed job and the blocking pool in
// core/blocking/.
//
// A job is a record (core/blocking/blocking_job.hpp: the completion node, the
// job_state word, the loop-owned completion callback) plus a typed part that
// only the template knows: the callable and where its outcome lands. Here the
// record is opaque storage of a fixed size (core/blocking/thread_pool.cpp
// checks that the real record fits), reached through the non-template
// functions below, as the call record is in call.hpp. The protocol that
// decides who frees a job is written in core/blocking/blocking_job.hpp.
#pragma once

#include <chrono>
#include <cstddef>

namespace palitra::detail {

class loop;

inline constexpr std::size_t blocking_record_bytes = 64;
struct alignas(8) blocking_record_storage {
  std::byte bytes_[blocking_record_bytes];
};

/// What the pool asks of a job's typed part.
struct blocking_ops {
  /// Worker thread: invoke the callable, store its value or exception, then
  /// destroy the callable (its captures die on the worker, not the loop).
  void (*run)(blocking_record_storage&) noexcept;
  /// Whoever owns the job (blocking_job.hpp, ownership): destroy the typed
  /// part and free the memory.
  void (*destroy)(blocking_record_storage&) noexcept;
};

/// Loop thread (the job's completion callback): `ctx` is the awaiter.
using blocking_done_fn = void (*)(void* ctx) noexcept;

// ---- the job ABI (core/blocking/thread_pool.cpp)

/// Builds the record in `s` (state idle: the builder owns the job).
void blocking_init(blocking_record_storage& s, const blocking_ops& ops) noexcept;
/// Loop thread. J1: hands the job to the pool of `l`'s runner, starting a
/// worker thread if every one is busy and the bound allows. `done(ctx)`
/// runs on the loop when the job has finished (J5), unless the awaiter let
/// go first (blocking_cancel / blocking_abandon). `deadline`: the awaiting
/// chain's earliest deadline, for this_task::cancelled() on the worker.
/// Throws palitra::error (with the std::error_code) when the pool has no
/// thread and cannot start one; the job was not taken then.
void blocking_submit(loop& l, blocking_record_storage& s, blocking_done_fn done, void* ctx,
                     std::chrono::steady_clock::time_point deadline);
/// The owner's last act on a job (idle, or after done(ctx) ran): destroy
/// the typed part and free the memory.
void blocking_destroy(blocking_record_storage& s) noexcept;
/// Loop thread, the awaiter was cancelled. true (J3): the job is detached,
/// the worker frees it, `done` never runs; resume the awaiter now. false:
/// the job already finished and its completion is on its way; `done` runs.
bool blocking_cancel(blocking_record_storage& s) noexcept;
/// Loop thread, the awaiter is destroyed while its job is submitted and its
/// completion has not run: after this call the pool or the loop frees the
/// job, and `done` never runs.
void blocking_abandon(blocking_record_storage& s) noexcept;

} // namespace palitra::detail
