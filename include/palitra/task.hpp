// palitra — task<T>: the lazy, move-only coroutine type.
//
// A task starts when it is awaited or submitted to a runner. Awaiting a task
// transfers control to it symmetrically (await_suspend returns its handle and
// final_suspend returns the awaiter's), so a chain of any depth runs in
// constant stack on toolchains that keep the tail call (see README,
// "Toolchains"). Frames come from palitra's frame allocator.
#pragma once

#include <cassert>
#include <coroutine>
#include <exception>
#include <type_traits>
#include <utility>
#include <variant>

#include <palitra/detail/cancel.hpp>
#include <palitra/detail/frame_allocator.hpp>
#include <palitra/error.hpp>

namespace palitra {

template <class T = void> class task;

namespace detail {

/// `void` results are represented as std::monostate in tuples, vectors and
/// outcomes (DESIGN.md §2).
template <class T>
using result_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

/// Told when a task that it started finished, instead of resuming an
/// awaiting coroutine. Runs on the loop thread inside the task's
/// final_suspend; returns the coroutine to transfer to (noop to return to the
/// loop). It must not publish anything to another thread: the frame is still
/// running its final_suspend.
class task_waiter {
public:
  virtual std::coroutine_handle<> on_task_done() noexcept = 0;

protected:
  ~task_waiter() = default;
};

class promise_base {
public:
  struct final_awaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      promise_base& p = h.promise();
      if (p.waiter_ != nullptr) return p.waiter_->on_task_done();
      return p.continuation_;
    }
    void await_resume() const noexcept {}
  };

  std::suspend_always initial_suspend() const noexcept { return {}; }
  final_awaiter final_suspend() const noexcept { return {}; }

  void unhandled_exception() noexcept {
    error_ = std::current_exception();
  }

  static void* operator new(std::size_t size) { return frame_alloc(size); }
  static void operator delete(void* p, std::size_t size) noexcept {
    frame_free(p, size);
  }

  bool failed() const noexcept { return error_ != nullptr; }
  const std::exception_ptr& exception() const noexcept { return error_; }

  // Set by whoever starts the task, before it first runs (loop thread).
  std::coroutine_handle<> continuation_;
  task_waiter* waiter_ = nullptr;
  cancel_state* chain_ = nullptr;

protected:
  std::exception_ptr error_;
};

template <class T> class promise final : public promise_base {
public:
  task<T> get_return_object() noexcept;

  template <class U = T>
    requires std::is_constructible_v<T, U&&>
  void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    value_.template emplace<1>(std::forward<U>(v));
  }

  /// Moves the result out (guarantee 5: moved, never copied) or rethrows.
  T take() {
    if (error_) std::rethrow_exception(error_);
    return std::move(std::get<1>(value_));
  }
  result_t<T> take_result() { return take(); }

private:
  std::variant<std::monostate, T> value_;
};

template <> class promise<void> final : public promise_base {
public:
  task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
  void take() const {
    if (error_) std::rethrow_exception(error_);
  }
  std::monostate take_result() const {
    take();
    return {};
  }
};

[[noreturn]] void throw_cancelled(const char* what);

/// Access to a task's frame for palitra's own starters (runner, groups).
struct task_access;

} // namespace detail

/// A lazy coroutine producing a T (or an exception).
/// Thread: runs on the loop thread of the runner it was submitted to.
/// Lifetime: move-only; destroying a task that never started frees its frame.
/// Awaiting: `co_await std::move(t)` / `co_await f()` yields the T or rethrows.
template <class T> class [[nodiscard]] task {
public:
  using promise_type = detail::promise<T>;
  using value_type = T;
  using handle_type = std::coroutine_handle<promise_type>;

  task() noexcept = default;
  task(task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  task& operator=(task&& o) noexcept {
    if (this != &o) {
      destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() { destroy(); }

  /// True if this task holds a coroutine.
  explicit operator bool() const noexcept { return static_cast<bool>(h_); }

  /// A cancellation point on entry: a chain already cancelled does not
  /// start the child and gets cancelled_error. Once the child started, its
  /// result (or exception) is what the awaiter sees.
  struct awaiter {
    handle_type h_;
    bool refused_ = false;
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) noexcept {
      promise_type& p = h_.promise();
      if constexpr (std::is_base_of_v<detail::promise_base, P>) {
        detail::cancel_state* chain = parent.promise().chain_;
        if (chain != nullptr && chain->cancelled()) {
          refused_ = true;
          return parent; // resume at once; await_resume throws
        }
        p.chain_ = chain; // same chain: one leaf at a time
      }
      p.continuation_ = parent;
      return h_;
    }
    T await_resume() {
      if (refused_) detail::throw_cancelled("palitra::task (co_await)");
      return h_.promise().take();
    }
  };

  /// Awaited as an rvalue only; the child's result is moved into the awaiter.
  awaiter operator co_await() && noexcept {
    assert(h_ && "co_await on an empty palitra::task");
    return awaiter{h_};
  }

private:
  friend struct detail::task_access;
  friend class detail::promise<T>;
  explicit task(handle_type h) noexcept : h_(h) {}
  void destroy() noexcept {
    if (h_) std::exchange(h_, {}).destroy();
  }
  handle_type h_;
};

namespace detail {

template <class T> task<T> promise<T>::get_return_object() noexcept {
  return task<T>(std::coroutine_handle<promise<T>>::from_promise(*this));
}
inline task<void> promise<void>::get_return_object() noexcept {
  return task<void>(std::coroutine_handle<promise<void>>::from_promise(*this));
}

struct task_access {
  template <class T>
  static std::coroutine_handle<promise<T>> handle(const task<T>& t) noexcept {
    return t.h_;
  }
  template <class T>
  static std::coroutine_handle<promise<T>> release(task<T>&& t) noexcept {
    return std::exchange(t.h_, {});
  }
};

/// The cancellation chain of the coroutine `h` (null for a foreign promise).
template <class P> cancel_state* chain_of(std::coroutine_handle<P> h) noexcept {
  if constexpr (std::is_base_of_v<promise_base, P>)
    return h.promise().chain_;
  else
    return nullptr;
}

template <class X> struct is_task : std::false_type {};
template <class T> struct is_task<task<T>> : std::true_type {};
template <class X>
inline constexpr bool is_task_v = is_task<std::remove_cvref_t<X>>::value;

} // namespace detail

namespace this_task {
/// True once cancellation of the running task was requested (by
/// future::cancel, a timeout or close), from any thread. A plain function for
/// CPU-bound code to poll; false outside any palitra task.
bool cancelled() noexcept;
} // namespace this_task

} // namespace palitra
