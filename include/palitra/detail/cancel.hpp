// palitra — cancellation state of one chain of awaiting coroutines.
//
// A *chain* is a root task plus the tasks it awaits one inside the other;
// exactly one coroutine of a chain runs or is suspended at a time, so a chain
// is suspended at no more than one *leaf* awaitable (sleep, yield, a group
// of children, an inner with_timeout chain, ...). Every root call, every
// child of when_all/when_any/gather and the inner task of with_timeout has a
// chain of its own whose `parent_` is the chain that started it.
//
// Protocol (the only cross-thread part is `requested_`):
//   states of requested_: false -> true, never back.
//   T1 any thread: request_async() stores true (this_task::cancelled() sees
//      it at once); the requester must then make the loop call deliver().
//   T2 loop thread: deliver() stores true and, if a leaf is armed, disarms
//      it and calls its on_cancel hook. The hook must only *schedule* the
//      coroutine's resumption (never resume inline: the caller of deliver()
//      may be inside another coroutine).
//   T3 loop thread: a leaf arms itself when it suspends and disarms itself
//      when it completes by its own means (timer fired, children done).
// Invariants:
//   I1 on_cancel_ is non-null only while the chain is suspended at the leaf
//      that armed it.
//   I2 a cancellation point throws cancelled_error iff cancelled() is true
//      when it is reached or when it resumes; so a request is never lost,
//      whether it arrives before, during or after the suspension.
#pragma once

#include <atomic>
#include <chrono>

namespace palitra::detail {

class cancel_state {
public:
  using hook = void (*)(void* ctx) noexcept;

  cancel_state() noexcept = default;
  explicit cancel_state(cancel_state* parent) noexcept : parent_(parent) {}
  cancel_state(const cancel_state&) = delete;
  cancel_state& operator=(const cancel_state&) = delete;

  /// True once cancellation of this chain or any ancestor was requested.
  bool cancelled() const noexcept {
    for (const cancel_state* c = this; c != nullptr; c = c->parent_)
      // relaxed: a flag read for its own value; nothing is published with it
      // (the loop-side delivery is ordered by the submission queue instead).
      if (c->requested_.load(std::memory_order_relaxed)) return true;
    return false;
  }

  /// As cancelled(), or a deadline of this chain or an ancestor has passed
  /// although its timer has not fired yet (the loop is busy running the
  /// caller: CPU-bound code polling this_task::cancelled()).
  bool cancelled_or_expired() const noexcept {
    if (cancelled()) return true;
    std::chrono::steady_clock::time_point now{};
    for (const cancel_state* c = this; c != nullptr; c = c->parent_) {
      if (c->deadline_ == std::chrono::steady_clock::time_point::max()) continue;
      if (now == std::chrono::steady_clock::time_point{}) now = std::chrono::steady_clock::now();
      if (c->deadline_ <= now) return true;
    }
    return false;
  }

  /// Loop thread: the earliest deadline of this chain and its ancestors
  /// (time_point::max() if none): what a blocking job copies so that
  /// this_task::cancelled() on its worker sees a passed deadline at once.
  std::chrono::steady_clock::time_point earliest_deadline() const noexcept {
    auto d = std::chrono::steady_clock::time_point::max();
    for (const cancel_state* c = this; c != nullptr; c = c->parent_)
      if (c->deadline_ < d) d = c->deadline_;
    return d;
  }

  /// Loop thread: the deadline after which this chain is cancelled.
  void set_deadline(std::chrono::steady_clock::time_point d) noexcept { deadline_ = d; }

  /// T1: mark as requested from any thread.
  void request_async() noexcept {
    // relaxed: see cancelled(); delivery happens through the loop.
    requested_.store(true, std::memory_order_relaxed);
  }

  /// T2 (loop thread): mark as requested and interrupt the armed leaf.
  void deliver() noexcept {
    requested_.store(true, std::memory_order_relaxed); // as request_async
    if (hook h = on_cancel_) {
      on_cancel_ = nullptr; // keeps I1: the leaf is no longer interruptible
      h(ctx_);
    }
  }

  /// T3 (loop thread).
  void arm(hook h, void* ctx) noexcept { on_cancel_ = h; ctx_ = ctx; }
  void disarm() noexcept { on_cancel_ = nullptr; }
  bool armed() const noexcept { return on_cancel_ != nullptr; }

  void set_parent(cancel_state* p) noexcept { parent_ = p; }
  cancel_state* parent() const noexcept { return parent_; }

private:
  std::atomic<bool> requested_{false};
  cancel_state* parent_ = nullptr; // loop-owned; set before the chain starts
  hook on_cancel_ = nullptr;       // loop-owned
  void* ctx_ = nullptr;            // loop-owned
  std::chrono::steady_clock::time_point deadline_ =
      std::chrono::steady_clock::time_point::max(); // loop-owned
};

} // namespace palitra::detail
