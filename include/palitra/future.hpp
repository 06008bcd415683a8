// palitra — future<T>: the handle of a task submitted with runner::submit,
// and cancel_token, which cancels it from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include <palitra/detail/call.hpp>
#include <palitra/error.hpp>
#include <palitra/task.hpp>

namespace palitra {

class runner;
template <class T> class future;

namespace detail {
struct token_link;
/// future::get_cancel_token and the future's end (non-template, core/runtime/call.cpp).
std::shared_ptr<token_link> make_token_link(runner_core& c, call_record_storage& op,
                                            const wait_ref& w);
void unlink_token(token_link& l) noexcept;
} // namespace detail

/// Cancels a submitted task from any thread: the thread-safe counterpart of
/// future::cancel (Python's Future.cancel from a watchdog while another
/// thread waits in get()). Copyable; made by future::get_cancel_token().
/// Thread: any, also while the future's owner is inside get() or wait_for().
/// Lifetime: outlives its future safely; once the task has ended or its
/// future has let go of it, cancel() does nothing.
class cancel_token {
public:
  cancel_token() noexcept = default;
  /// Request cancellation; the task sees cancelled_error at its next
  /// cancellation point. Never blocks (a short lock against the future's
  /// own end), never throws.
  void cancel() const noexcept;
  /// False for a default-constructed token.
  explicit operator bool() const noexcept { return static_cast<bool>(link_); }

private:
  template <class T> friend class future;
  explicit cancel_token(std::shared_ptr<detail::token_link> l) noexcept : link_(std::move(l)) {}
  std::shared_ptr<detail::token_link> link_;
};

/// The handle of a submitted task.
/// Thread: one owner at a time. Lifetime: destroying a future that was never
/// waited on requests cancellation and waits until the coroutine is gone (on
/// the loop thread itself it only requests, and the loop reclaims the frame).
template <class T> class future {
public:
  future() noexcept = default;
  future(future&& o) noexcept
      : core_(o.core_), w_(o.w_), st_(std::exchange(o.st_, nullptr)), link_(std::move(o.link_)) {}
  future& operator=(future&& o) noexcept {
    if (this != &o) {
      reset();
      core_ = o.core_;
      w_ = o.w_;
      st_ = std::exchange(o.st_, nullptr);
      link_ = std::move(o.link_);
    }
    return *this;
  }
  future(const future&) = delete;
  future& operator=(const future&) = delete;
  ~future() { reset(); }

  /// True until get() consumed the result (or after a move-from: false).
  bool valid() const noexcept { return st_ != nullptr; }

  /// Block until the task ended; its value or exception (cancelled_error
  /// after cancel(), runner_closed_error after close()).
  /// Throws: reentrancy_error on the runner's loop thread.
  T get() {
    require("palitra::future::get");
    // Even when ready: a blocking call on the loop thread is refused whatever
    // the timing, so the misuse shows on the first run, not the unlucky one.
    detail::check_not_loop_thread(w_, "palitra::future::get");
    // A finished call never touches the runner: get() stays valid after the
    // runner was closed and destroyed (close() publishes every call). From
    // here the call may be published at any moment and the runner destroyed
    // right after (close() then ~runner): touch only w_ and st_.
    if (!detail::call_done(*st_)) {
      detail::check_blocking_wait(w_, "palitra::future::get");
      detail::call_wait(w_, *st_, false);
    }
    drop_link();
    std::unique_ptr<state> s(std::exchange(st_, nullptr));
    return s->take("palitra::future::get");
  }

  /// Wait up to `d`; true if the task has ended. Throws: reentrancy_error on
  /// the runner's loop thread.
  template <class Rep, class Period> bool wait_for(std::chrono::duration<Rep, Period> d) {
    require("palitra::future::wait_for");
    detail::check_not_loop_thread(w_, "palitra::future::wait_for");
    if (detail::call_done(*st_)) return true;
    detail::check_blocking_wait(w_, "palitra::future::wait_for"); // as in get()
    return detail::call_wait_until(w_, *st_, detail::deadline_after(d));
  }

  /// True if the task has ended (get() will not block).
  bool ready() const noexcept { return st_ != nullptr && detail::call_done(*st_); }

  /// Request cancellation (never blocks); the task sees cancelled_error at
  /// its next cancellation point. Thread: the owner's, like every member; to
  /// cancel from another thread, use get_cancel_token().
  void cancel() noexcept {
    // Not in a forked child: the loop that owns the call does not exist
    // there, and its copied wake fd is the parent's.
    if (st_ != nullptr && !detail::call_done(*st_) && !detail::inherited(w_))
      detail::call_cancel(*core_, *st_);
  }

  /// A token that cancels this task from any thread (see cancel_token).
  /// Thread: the owner's. Throws: palitra::error on a future with no state;
  /// std::bad_alloc (the first token allocates a small shared block).
  cancel_token get_cancel_token() {
    require("palitra::future::get_cancel_token");
    if (!link_) link_ = detail::make_token_link(*core_, *st_, w_);
    return cancel_token(link_);
  }

private:
  friend class runner;
  using state = detail::heap_call<T>;

  void drop_link() noexcept {
    if (link_) {
      detail::unlink_token(*link_); // no token touches the op after this
      link_.reset();
    }
  }
  future(detail::runner_core* c, detail::wait_ref w, state* s) noexcept
      : core_(c), w_(w), st_(s) {}

  void require(const char* what) const {
    if (st_ == nullptr)
      throw error(std::string(what) + ": this future has no state (moved-from or already "
                                      "retrieved); call get() once per submit()");
  }

  void reset() noexcept {
    if (st_ == nullptr) return;
    drop_link();
    state* s = std::exchange(st_, nullptr);
    if (!detail::call_done(*s)) {
      if (detail::inherited(w_)) {
        // A forked child: the loop thread that owns the call does not exist
        // here, so nothing can end it. Leak it rather than hang.
        return;
      }
      if (detail::on_loop_thread(*core_)) {
        detail::call_detach_on_loop(*core_, *s); // the loop reclaims it at the end
        return;
      }
      detail::call_cancel(*core_, *s);
      detail::call_wait(w_, *s, false);
    }
    delete s; // the frame is gone already: the loop harvested it before P1
  }

  detail::runner_core* core_ = nullptr;
  detail::wait_ref w_; // what a wait reads instead of the runner (detail/call.hpp)
  state* st_ = nullptr;
  std::shared_ptr<detail::token_link> link_; // only once a cancel_token was asked for
};

} // namespace palitra
