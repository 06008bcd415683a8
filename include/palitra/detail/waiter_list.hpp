// palitra — the waiters of the loop-local primitives (event, mutex,
// semaphore, channel): an intrusive FIFO of suspended coroutines, the owning
// loop, and the one awaiter shape every wait uses.
//
// ---------------------------------------------------------------------------
// Protocol: a wait on a primitive (wait_state; every step on the owning
// loop's thread, so no atomics: I6).
//   idle      -> cancelled  W1 entry: the chain is already cancelled (a
//                           cancellation point, cancel.hpp I2); no suspend.
//   idle      -> ready      W1 fast path: the resource is free and nobody is
//                           queued or granted ahead (I2 here); taken at once.
//   idle      -> queued     W1 slow path: pushed at the back of the object's
//                           queue, the chain's hook armed (cancel.hpp T3).
//   queued    -> granted    W2 hand-off (unlock/release/set/send/recv): the
//                           object pops its front waiter, disarms its hook,
//                           *reserves* the resource for it and schedules its
//                           resume. A front waiter whose chain is already
//                           cancelled (requested from another thread, not
//                           yet delivered) is not granted: it goes to
//                           cancelled and the grant goes to the next one.
//   queued    -> closed     W2 channel close: the waiter is woken empty-handed.
//   queued    -> cancelled  W3 cancellation hook (cancel.hpp T2): unlinked,
//                           scheduled. Only queued waiters have a hook armed.
//   granted   -> (commit)   W4 resume: the effect happens now, in the
//                           waiter's own coroutine (lock owned, unit taken,
//                           value moved). If its chain was cancelled between
//                           the grant and the resume, the reservation goes
//                           back through W2 (the next waiter gets it) and
//                           the waiter throws cancelled_error.
//   queued, granted, closed -> abandoned  W5 the object is destroyed on its
//                           loop: every waiter is scheduled and throws
//                           palitra::error without touching the object.
// Hand-off rule (reservation, then commit): a freed resource is never left
// for whoever comes first; it is reserved for the front waiter at once, so a
// later fast path cannot barge in, and committed only when that waiter runs.
// Invariants:
//   I1 a waiter is linked in at most one list: its object's queue (queued,
//      hook armed) or its woken list (granted/closed, hook disarmed); it is
//      scheduled exactly once per suspension.
//   I2 no barging: a fast path succeeds only when no waiter of that kind is
//      queued or holds a reservation.
//   I3 FIFO: waiters are granted in queue order; the run queue is FIFO, so
//      they also commit in that order.
//   I4 no trace: a waiter that throws cancelled_error committed nothing (it
//      never owned the lock, took a unit, received or delivered a value).
//   I5 every resume goes through detail::schedule, never inline.
//   I6 one loop: every member that reads or writes the state first calls
//      enter(), one thread-local compare; construction and destruction may
//      happen on any thread (destruction with waiters only on the loop).
// Checked by tests/test_sync.cpp ("sync:" cases) and fuzz/fuzz_sync.cpp.
// ---------------------------------------------------------------------------
#pragma once

#include <coroutine>
#include <cstddef>

#include <palitra/detail/cancel.hpp>
#include <palitra/detail/loop_hooks.hpp>
#include <palitra/task.hpp>

namespace palitra::detail {

enum class wait_state : unsigned char { idle, ready, queued, granted, closed, cancelled, abandoned };

class waiter_list;

/// One suspended wait. Intrusive: it lives in the awaiter (the frame).
struct sync_waiter {
  sync_waiter* prev = nullptr;
  sync_waiter* next = nullptr;
  waiter_list* list = nullptr; // the list it is linked in (I1), or null
  loop* home = nullptr;        // for the cancellation hook's schedule
  ready_item item;             // handle + chain for the run queue
  wait_state state = wait_state::idle;
};

/// Intrusive doubly-linked FIFO: O(1) push, pop and unlink (cancellation).
class waiter_list {
public:
  waiter_list() noexcept = default;
  waiter_list(const waiter_list&) = delete;
  waiter_list& operator=(const waiter_list&) = delete;

  bool empty() const noexcept { return head_ == nullptr; }
  sync_waiter* front() const noexcept { return head_; }
  std::size_t size() const noexcept { return size_; }

  void push_back(sync_waiter& w) noexcept {
    w.prev = tail_;
    w.next = nullptr;
    w.list = this;
    (tail_ != nullptr ? tail_->next : head_) = &w;
    tail_ = &w;
    ++size_;
  }
  void erase(sync_waiter& w) noexcept {
    (w.prev != nullptr ? w.prev->next : head_) = w.next;
    (w.next != nullptr ? w.next->prev : tail_) = w.prev;
    w.prev = w.next = nullptr;
    w.list = nullptr;
    --size_;
  }

private:
  sync_waiter* head_ = nullptr;
  sync_waiter* tail_ = nullptr;
  std::size_t size_ = 0;
};

/// What every primitive shares: its loop (I6), its woken waiters, and the
/// W1-W5 steps over any of its queues. Loop thread, except as noted.
class sync_core {
public:
  /// `kind` names the object in errors ("palitra::mutex"). Any thread.
  explicit sync_core(const char* kind) noexcept : kind_(kind) {}
  /// W5. Any thread when no waiter is left; with waiters, only on the
  /// owning loop (elsewhere: PALITRA_ASSERT, the waiters' frames still
  /// point here). Call abandon() on every other queue first.
  ~sync_core();
  sync_core(const sync_core&) = delete;
  sync_core& operator=(const sync_core&) = delete;

  /// I6: binds the object to this thread's loop on first use; throws
  /// palitra::error naming `what` off any loop or on another one.
  loop& enter(const char* what) {
    loop* l = current_loop();
    if (l == loop_ && l != nullptr) [[likely]] return *l;
    return bind(l, what);
  }

  waiter_list& queue() noexcept { return queue_; }
  const waiter_list& queue() const noexcept { return queue_; }

  /// W1 slow path: push `w` on `q` and arm the chain's hook.
  void suspend(waiter_list& q, sync_waiter& w, std::coroutine_handle<> h) noexcept;
  /// W2: grant (or close) the front live waiter of `q`; false if none is left.
  bool wake_front(waiter_list& q, wait_state to) noexcept;
  /// W2 for every waiter of `q` (event set, channel close).
  void wake_all(waiter_list& q, wait_state to) noexcept;
  /// W4: leave the woken list (the object is alive: state is not abandoned).
  void settle(sync_waiter& w) noexcept { woken_.erase(w); }
  /// W5 for one queue of a dying object.
  void abandon(waiter_list& q) noexcept;
  /// The error of an abandoned wait. Touches no object.
  [[noreturn]] static void throw_abandoned(const char* what);

private:
  loop& bind(loop* l, const char* what);
  static void on_cancel(void* ctx) noexcept;

  waiter_list queue_; // the only queue of event/mutex/semaphore, recv of channel
  waiter_list woken_; // granted / closed, not yet resumed
  loop* loop_ = nullptr;
  const char* kind_;
};

/// The parts of an Op (below) that event, mutex and semaphore share: one
/// queue, nothing to do after queueing, nothing to return.
struct single_queue_op {
  sync_core& c;
  sync_core& core() noexcept { return c; }
  waiter_list& queue() noexcept { return c.queue(); }
  void queued() noexcept {}
  void finish(wait_state) const noexcept {}
};

/// The awaiter of every wait. `Op` says what one kind of wait does:
///   static constexpr const char* what;            // for errors
///   sync_core& core(); waiter_list& queue();
///   bool take_now();            // W1 fast path (after enter)
///   void queued();              // after W1 slow path (channel: pump)
///   void give_back();           // W4: a grant whose waiter was cancelled
///   R finish(wait_state s);     // W4: ready / granted / closed -> result
template <class Op> class sync_awaiter {
public:
  explicit sync_awaiter(Op op) noexcept : op_(static_cast<Op&&>(op)) {}
  sync_awaiter(const sync_awaiter&) = delete;
  sync_awaiter& operator=(const sync_awaiter&) = delete;
  ~sync_awaiter() {
    // A frame destroyed while queued must not stay in the object's queue or
    // on the chain (as sleep_awaiter's timer). A woken waiter is in the run
    // queue: its frame must not be destroyed before it runs.
    if (w_.state == wait_state::queued) {
      w_.list->erase(w_);
      if (w_.item.chain != nullptr) w_.item.chain->disarm();
    }
  }

  bool await_ready() const noexcept { return false; }

  template <class P> bool await_suspend(std::coroutine_handle<P> h) {
    op_.core().enter(Op::what);
    w_.item.chain = chain_of(h);
    if (cancelled()) { // W1: a cancellation point on entry
      w_.state = wait_state::cancelled;
      return false;
    }
    if (op_.take_now()) {
      w_.state = wait_state::ready;
      return false;
    }
    op_.core().suspend(op_.queue(), w_, h);
    op_.queued();
    return true;
  }

  decltype(auto) await_resume() {
    const wait_state s = w_.state;
    if (s == wait_state::abandoned) sync_core::throw_abandoned(Op::what); // W5
    if (s == wait_state::cancelled) throw_cancelled(Op::what);
    if (s != wait_state::ready) {
      op_.core().settle(w_);
      if (cancelled()) { // W4: cancelled after the grant; keeps I4
        if (s == wait_state::granted) op_.give_back();
        throw_cancelled(Op::what);
      }
    }
    return op_.finish(s);
  }

private:
  bool cancelled() const noexcept {
    return w_.item.chain != nullptr && w_.item.chain->cancelled();
  }

  Op op_;
  sync_waiter w_;
};

} // namespace palitra::detail
