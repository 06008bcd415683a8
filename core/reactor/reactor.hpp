// palitra — the reactor contract: what the loop needs from the OS for I/O.
//
// Protocol: io_op (one per outstanding wait; loop thread only, except wake()).
//   States (io_op_state): idle -> pending -> (ready | cancelling) -> completed.
//   idle       the owner's: it sets kind, interest, handle and complete.
//   pending    start() moved it. The backend owns the links; the owner reads
//              only `state` and must neither destroy nor move it (I1).
//   ready      poll() harvested readiness for it into its batch (phase 1);
//              the same poll() dispatches it (phase 2).
//   cancelling cancel(), detach() or a failed start() moved it; a later
//              poll() completes it (I2, I6).
//   completed  poll() sets it just before complete(op); from then the op is
//              the owner's again (restart, destroy).
//   A watch is persistent: each report runs complete(op) with state pending
//   (io_op::done() false) and it stays armed; it ends only via cancelling.
// Where it takes effect: start() at once for the next poll(); cancel() at the
//   call (no ok result can follow it, I4); detach() at the call (I5).
// Invariants:
//   I1 A started op is not destroyed or moved until complete() ran with
//      state completed.
//   I2 complete() runs only inside poll(), on the loop thread: start(),
//      cancel(), detach() and set_interest() never complete an op inline.
//   I3 Every started op completes exactly once with a final result: ready
//      (error empty), an error, or cancelled (ECANCELED). Watches report any
//      number of times before that.
//   I4 cancel() of a pending or ready op yields cancelled, even if readiness
//      was already harvested; of an idle, cancelling or completed op it
//      does nothing.
//   I5 detach() takes the handle out of the OS set and cancels every op of
//      the handle, pending or already in the current batch. The owner calls
//      it before closing the fd, so an fd number reused after close never
//      sees the old handle's events, even from the same epoll_wait batch.
//   I6 An op moved to cancelling completes on the next poll() or later, never
//      in the poll() that is dispatching when cancel() is called; a poll()
//      with such completions due does not block.
//   I7 Readiness ops complete on error/hang-up too (events has io_err /
//      io_hup), so the owner's next syscall reports the error; nothing is left
//      armed for a handle no op waits on, so a dead fd cannot spin the loop.
//   I8 wake() is the only member any thread may call; it is
//      async-signal-safe and makes the current or next poll() return.
//   I9 forget() is I1's only exception: it unlinks an op in any state
//      without completing it, for an owner that is being destroyed while
//      the op is in flight (a coroutine frame destroyed while suspended).
//      complete() is never called for it afterwards.
//
// One implementation per backend (reactor_epoll.cpp; kqueue and IOCP are not
// written yet; reactor_fake.cpp is the scripted test backend); the build
// system picks the file, and the selector at the end of this header is its
// only platform #if. Completion-shaped: IOCP reports completions, epoll and
// kqueue report readiness as completed readiness ops.
#pragma once

#include <cstddef>
#include <cstdint>
#include <system_error>

namespace palitra::detail {

/// Readiness bits: a watch's interest (io_in, io_out) and what poll() saw.
inline constexpr std::uint32_t io_in = 1;
inline constexpr std::uint32_t io_out = 2;
inline constexpr std::uint32_t io_err = 4;
inline constexpr std::uint32_t io_hup = 8; ///< hang-up (a peer's shutdown of writing is io_in: EOF)

enum class io_kind : std::uint8_t {
  readable, ///< one-shot: completes once the fd is readable (or errored)
  writable, ///< one-shot: completes once the fd is writable (or errored)
  watch,    ///< persistent, level-triggered: reports while `interest` holds
};

enum class io_op_state : std::uint8_t { idle, pending, ready, cancelling, completed };

struct io_handle;

/// One wait on a handle. Intrusive: lives in the awaiter (I1).
struct io_op {
  // ---- the owner's, set while idle
  io_kind kind = io_kind::readable;
  std::uint32_t interest = 0; ///< watch only: io_in | io_out (see set_interest)
  io_handle* handle = nullptr;
  /// Runs on the loop thread inside poll() (I2); may start, cancel, detach.
  void (*complete)(io_op&) noexcept = nullptr;
  void* ctx = nullptr; ///< for complete(); the reactor never reads it

  // ---- the result, written by poll() before complete()
  std::error_code error;    ///< empty: ready; ECANCELED: cancelled; else failed
  std::uint32_t events = 0; ///< io_* bits seen by this report

  // ---- the backend's
  io_op_state state = io_op_state::idle;
  io_op* next_ = nullptr;
  io_op* prev_ = nullptr;

  /// The final completion (a watch's reports are not).
  bool done() const noexcept { return state == io_op_state::completed; }
  bool cancelled() const noexcept { return error == std::errc::operation_canceled; }
  /// io_in / io_out this op waits for.
  std::uint32_t wants() const noexcept {
    return kind == io_kind::readable ? io_in : kind == io_kind::writable ? io_out : interest;
  }
};

/// An intrusive FIFO of ops; an op is in at most one (which one follows from
/// its state: pending -> its handle's, ready -> the batch, cancelling -> due).
struct io_op_list {
  io_op* head = nullptr;
  io_op* tail = nullptr;
  bool empty() const noexcept { return head == nullptr; }
  void push_back(io_op& op) noexcept;
  void erase(io_op& op) noexcept;
  io_op* pop_front() noexcept;
};

/// One fd's registration (epoll data.ptr, kqueue udata, IOCP key). Lives
/// with the owner of the fd; attach() before the first op, detach() before
/// close(fd) (I5). Not movable while attached.
struct io_handle {
  int fd = -1;             ///< read-only for the owner
  bool attached = false;   ///< read-only for the owner
  std::uint32_t armed = 0; ///< backend: io_in/io_out registered with the OS
  io_op_list ops;          ///< backend: this handle's pending ops
};

/// What io_ops::harvest did with one report.
struct io_harvest {
  std::uint32_t still = 0; ///< io_in/io_out its handle's ops still want (watches included)
  int matched = 0;         ///< ops moved to the batch
};

/// The backend-independent half of every backend: op bookkeeping and the
/// two-phase dispatch that keeps I2-I6. Loop thread only.
class io_ops {
public:
  /// The handle's bookkeeping once the OS accepted `fd`.
  void attached(io_handle& h, int fd) noexcept;
  /// I5: cancels the handle's pending ops and its ops in the batch; resets it.
  void detached(io_handle& h) noexcept;
  /// idle|completed -> pending, linked into its handle.
  void started(io_op& op) noexcept;
  /// pending -> cancelling with `ec` (a start the OS refused).
  void failed(io_op& op, std::error_code ec) noexcept;
  /// I4. false if the op was not pending or ready.
  bool cancel(io_op& op) noexcept;
  /// I9: unlinked from whichever list holds it; never completes. -> idle.
  void forget(io_op& op) noexcept;
  /// Phase 1: the handle's ops matching `events` move to the batch.
  io_harvest harvest(io_handle& h, std::uint32_t events) noexcept;
  /// Starts a poll: takes the due completions (I6). true if any are due.
  bool begin_poll() noexcept;
  /// Phase 2: completes what begin_poll took, then the batch. Returns the
  /// number of complete() calls.
  int dispatch() noexcept;
  /// Started ops not completed yet.
  std::size_t pending() const noexcept { return pending_; }
  /// Started ops that a poll could complete or report: pending() minus the
  /// watches in flight with interest 0 (I7: they report nothing). The loop
  /// polls on a busy pass only if this is nonzero, so an idle keep-alive
  /// pool (parked watches) costs a pure run() load no syscall.
  std::size_t active() const noexcept { return pending_ - quiet_; }
  /// A watch's interest changes (the backends' set_interest).
  void set_interest(io_op& watch, std::uint32_t interest) noexcept;
  std::size_t handles() const noexcept { return handles_; }
  /// io_in/io_out wanted by the handle's pending ops.
  static std::uint32_t wanted(const io_handle& h) noexcept;

private:
  io_op_list batch_;       // ready
  io_op_list due_;         // cancelling: completes in the next poll
  io_op_list dispatching_; // cancelling: taken by begin_poll, completes now
  std::size_t pending_ = 0;
  std::size_t quiet_ = 0; // watches pending or ready with interest 0
  std::size_t handles_ = 0;
  static bool is_quiet(const io_op& op) noexcept {
    return op.kind == io_kind::watch && op.interest == 0;
  }
};

/// The loop pass's I/O step (loop::run): a non-blocking poll, only while
/// ops are active (io_ops::active), so a pass under a pure run() load makes
/// no syscall, also with parked watches of an idle connection pool. A
/// template so that tests drive it with reactor_fake. Thread: loop.
template <class Reactor> int poll_pass(Reactor& r) noexcept {
  return r.active_ops() != 0 ? r.poll(0) : 0;
}

} // namespace palitra::detail

// ---- the selector: the reactor's only platform #if (STYLE.md, Layout)
#if defined(__linux__)
#include "reactor_epoll.hpp" // included first, it is completed after this
namespace palitra::detail { class reactor_epoll; using reactor = reactor_epoll; }
#else
#error "palitra: no reactor backend for this platform yet (kqueue and IOCP are not written)"
#endif
