// palitra — awaitables for use inside coroutines on the loop thread:
// sleep_for, sleep_until, yield, with_timeout. Each is a cancellation point.
#pragma once

#include <chrono>
#include <coroutine>
#include <type_traits>

#include <palitra/detail/cancel.hpp>
#include <palitra/detail/loop_hooks.hpp>
#include <palitra/task.hpp>

namespace palitra {

namespace detail {

/// sleep_until / yield. Loop thread only.
///   suspended on the timer (or the run queue, for yield and past deadlines);
///   ends by the timer firing (disarms the chain, schedules the resume) or by
///   cancellation (hook: removes the timer, schedules the resume). Either way
///   the resume goes through the run queue, never inline.
class sleep_awaiter {
public:
  explicit sleep_awaiter(std::chrono::steady_clock::time_point deadline,
                         bool is_yield = false) noexcept
      : deadline_(deadline), yield_(is_yield) {}
  sleep_awaiter(const sleep_awaiter&) = delete;
  sleep_awaiter& operator=(const sleep_awaiter&) = delete;
  ~sleep_awaiter() {
    // A frame destroyed while suspended here must not leave its timer in
    // the heap or its hook on the chain.
    if (timer_.armed()) remove_timer(*loop_, timer_);
    if (chain_ != nullptr && hooked_) chain_->disarm();
  }

  bool await_ready() const noexcept { return false; }

  template <class P> bool await_suspend(std::coroutine_handle<P> h) {
    loop_ = &require_loop(yield_ ? "palitra::yield" : "palitra::sleep_for/sleep_until");
    chain_ = chain_of(h);
    if (chain_ != nullptr && chain_->cancelled()) return false; // throws in resume
    item_.handle = h;
    item_.chain = chain_;
    if (yield_ || deadline_ <= std::chrono::steady_clock::now()) {
      schedule(*loop_, item_); // a run-queue turn; not interruptible (I2 covers it)
      return true;
    }
    timer_.deadline = deadline_;
    timer_.fire = &on_timer;
    timer_.ctx = this;
    add_timer(*loop_, timer_);
    if (chain_ != nullptr) {
      chain_->arm(&on_cancel, this);
      hooked_ = true;
    }
    return true;
  }

  void await_resume() const {
    if (chain_ != nullptr && chain_->cancelled())
      throw_cancelled(yield_ ? "palitra::yield" : "palitra::sleep_for");
  }

private:
  static void on_timer(void* ctx) noexcept {
    auto* self = static_cast<sleep_awaiter*>(ctx);
    if (self->hooked_) {
      self->chain_->disarm();
      self->hooked_ = false;
    }
    schedule(*self->loop_, self->item_);
  }
  static void on_cancel(void* ctx) noexcept {
    auto* self = static_cast<sleep_awaiter*>(ctx);
    self->hooked_ = false; // deliver() already cleared the hook
    remove_timer(*self->loop_, self->timer_);
    schedule(*self->loop_, self->item_);
  }

  std::chrono::steady_clock::time_point deadline_;
  bool yield_;
  bool hooked_ = false;
  loop* loop_ = nullptr;
  cancel_state* chain_ = nullptr;
  timer_node timer_;
  ready_item item_;
};

} // namespace detail

/// Suspend the running task until `deadline` (steady clock).
/// Thread: loop thread. Cancel: yes (throws cancelled_error).
/// A deadline already passed still gives the loop one turn, like yield().
inline detail::sleep_awaiter sleep_until(std::chrono::steady_clock::time_point deadline) noexcept {
  return detail::sleep_awaiter(deadline);
}

/// Suspend the running task for `d` (any duration; ≤ 0 behaves as yield()).
/// Thread: loop thread. Cancel: yes.
template <class Rep, class Period>
detail::sleep_awaiter sleep_for(std::chrono::duration<Rep, Period> d) noexcept {
  const auto now = std::chrono::steady_clock::now();
  if (d <= d.zero()) return detail::sleep_awaiter(now);
  return detail::sleep_awaiter(now + std::chrono::ceil<std::chrono::steady_clock::duration>(d));
}

/// Let every other ready coroutine run once, then continue (FIFO).
/// Thread: loop thread. Cancel: yes.
inline detail::sleep_awaiter yield() noexcept {
  return detail::sleep_awaiter({}, /*is_yield=*/true);
}

namespace detail {

/// The inner chain of with_timeout. Loop thread only.
///   start: the outer chain's leaf becomes this awaiter (cancellation is
///   forwarded to the inner chain), the timer is armed, the inner task runs
///   until its first suspension (done_during_start_ keeps the outer from
///   being resumed inside its own await_suspend).
///   timer fires first: timed_out_ = true, the inner chain is cancelled; we
///   still wait for the inner task to end (structured).
///   inner ends first: the timer is removed; its result stands.
template <class T> class timeout_awaiter final : public task_waiter {
public:
  timeout_awaiter(task<T>&& t, std::chrono::nanoseconds d) noexcept
      : task_(std::move(t)), duration_(d) {}
  ~timeout_awaiter() {
    if (timer_.armed()) remove_timer(*loop_, timer_);
  }

  bool await_ready() const noexcept { return false; }

  template <class P> bool await_suspend(std::coroutine_handle<P> outer) {
    loop_ = &require_loop("palitra::with_timeout");
    outer_ = outer;
    outer_chain_ = chain_of(outer);
    inner_chain_.set_parent(outer_chain_);
    auto h = task_access::handle(task_);
    h.promise().waiter_ = this;
    h.promise().chain_ = &inner_chain_;
    timer_.deadline = std::chrono::steady_clock::now() +
                      std::chrono::ceil<std::chrono::steady_clock::duration>(duration_);
    timer_.fire = &on_timer;
    timer_.ctx = this;
    add_timer(*loop_, timer_);
    inner_chain_.set_deadline(timer_.deadline);
    if (outer_chain_ != nullptr) outer_chain_->arm(&on_outer_cancel, this);
    starting_ = true;
    set_current_chain(&inner_chain_);
    h.resume();
    set_current_chain(outer_chain_);
    starting_ = false;
    return !done_;
  }

  T await_resume() {
    auto h = task_access::handle(task_);
    if (timed_out_ && h.promise().failed() && is_cancellation(h.promise().exception()) &&
        !(outer_chain_ != nullptr && outer_chain_->cancelled())) {
      task_ = task<T>(); // the inner frame is gone before the error is seen
      throw timeout_error("palitra::with_timeout: deadline passed; the inner task was "
                          "cancelled and destroyed (raise the timeout or make the task faster)");
    }
    return h.promise().take();
  }

  std::coroutine_handle<> on_task_done() noexcept override {
    done_ = true;
    if (timer_.armed()) remove_timer(*loop_, timer_);
    if (outer_chain_ != nullptr) outer_chain_->disarm();
    if (starting_) return std::noop_coroutine();
    set_current_chain(outer_chain_);
    return outer_;
  }

private:
  static void on_timer(void* ctx) noexcept {
    auto* self = static_cast<timeout_awaiter*>(ctx);
    self->timed_out_ = true;
    self->inner_chain_.deliver();
  }
  static void on_outer_cancel(void* ctx) noexcept {
    static_cast<timeout_awaiter*>(ctx)->inner_chain_.deliver();
  }

  task<T> task_;
  std::chrono::nanoseconds duration_;
  loop* loop_ = nullptr;
  std::coroutine_handle<> outer_;
  cancel_state* outer_chain_ = nullptr;
  cancel_state inner_chain_;
  timer_node timer_;
  bool starting_ = false;
  bool done_ = false;
  bool timed_out_ = false;
};

} // namespace detail

/// A task that runs `t` and throws timeout_error if it has not finished
/// after `d`; the inner task is cancelled and its frame destroyed before the
/// error reaches the awaiting coroutine. A value published before the
/// deadline is never discarded. Thread: loop thread. Cancel: yes.
template <class T, class Rep, class Period>
task<T> with_timeout(task<T> t, std::chrono::duration<Rep, Period> d) {
  co_return co_await detail::timeout_awaiter<T>(
      std::move(t), std::chrono::duration_cast<std::chrono::nanoseconds>(d));
}

} // namespace palitra
