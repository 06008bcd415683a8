// palitra — started<V> and started_result<T, V>: the handshake of
// runner::start (anyio's start_task / TaskStatus.started), for loop services
// that must be ready before their sync caller goes on.
//
// ---------------------------------------------------------------------------
// Protocol: the start hand-over (start_state::ph, under start_state::m).
//   pending -> set     the task, on the loop thread: started<V>::set(v)
//                      stores the value and wakes the caller.
//   pending -> ended   the root frame's destruction, on the loop thread (or
//                      on the caller's, for a submit that was refused):
//                      start_end_notice, a by-value parameter of the root
//                      frame, so its destructor runs however the frame ends:
//                      after the task returned or threw, after close()
//                      cancelled it, or without its ever having run.
//   set     -> set     a second set(): throws palitra::error, nothing changes.
// Rules:
//   ST1 start's caller waits for ph != pending, then reads value (set) or
//       the future (ended); it never waits on both.
//   ST2 ended comes from the frame's destruction, which precedes the call's
//       publish (call.hpp C3): after ended, future::get only waits for P1.
//   ST3 the block is reference-counted: the caller returns at set while the
//       task runs on and may still call set() (set -> set throws), so
//       either side may be the last. start is rare (a service's start-up),
//       so a mutex and a condition variable are all it needs.
// ---------------------------------------------------------------------------
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

#include <palitra/error.hpp>
#include <palitra/future.hpp>
#include <palitra/task.hpp>

namespace palitra {

template <class V = void> class started;

namespace detail {

template <class V> struct start_state {
  enum class phase : unsigned char { pending, set, ended };
  std::mutex m;
  std::condition_variable cv;
  phase ph = phase::pending;                // guarded by m
  std::optional<result_t<V>> value;         // guarded by m; filled by set()

  /// The root frame is being destroyed: release the caller if set() never ran.
  void end() noexcept {
    std::lock_guard<std::mutex> lk(m);
    if (ph != phase::pending) return;
    ph = phase::ended;
    cv.notify_all();
  }
};

/// A parameter of start's root frame: its destructor is the frame's end.
template <class V> struct start_end_notice {
  explicit start_end_notice(std::shared_ptr<start_state<V>> s) noexcept : st(std::move(s)) {}
  start_end_notice(start_end_notice&& o) noexcept = default; // leaves o.st empty
  start_end_notice(const start_end_notice&) = delete;
  start_end_notice& operator=(const start_end_notice&) = delete;
  start_end_notice& operator=(start_end_notice&&) = delete;
  ~start_end_notice() {
    if (st) st->end();
  }
  std::shared_ptr<start_state<V>> st;
};

struct started_access {
  template <class V> static started<V> make(start_state<V>* s) noexcept { return started<V>(s); }
  /// Under s.m: the one transition pending -> set.
  template <class V> static void mark_set(start_state<V>& s) {
    if (s.ph == start_state<V>::phase::set)
      throw error("palitra::started::set: called twice; a started task signals once");
    s.ph = start_state<V>::phase::set;
    s.cv.notify_all();
  }
};

/// start's root: owns the callable and the handle for the task's whole life
/// (the task may keep `started<V>&` and call set() at any point).
template <class V, class F>
std::invoke_result_t<F&, started<V>&> start_root(F f, start_end_notice<V> n) {
  started<V> h = started_access::make<V>(n.st.get());
  co_return co_await std::invoke(f, h);
}

/// The default template argument of start: take V from the callable's
/// parameter (`started<V>&`) when it names one.
struct deduce_started {};

template <class S> struct started_of {};
template <class V> struct started_of<started<V>&> { using type = V; };

template <class M> struct sole_arg {};
template <class R, class C, class A> struct sole_arg<R (C::*)(A)> { using type = A; };
template <class R, class C, class A> struct sole_arg<R (C::*)(A) const> { using type = A; };
template <class R, class C, class A> struct sole_arg<R (C::*)(A) noexcept> { using type = A; };
template <class R, class C, class A> struct sole_arg<R (C::*)(A) const noexcept> {
  using type = A;
};
template <class R, class A> struct sole_arg<R (*)(A)> { using type = A; };
template <class R, class A> struct sole_arg<R (*)(A) noexcept> { using type = A; };

template <class F, class = void> struct call_arg : sole_arg<F> {}; // function pointers
template <class F>
struct call_arg<F, std::void_t<decltype(&F::operator())>> : sole_arg<decltype(&F::operator())> {};

template <class F, class = void> struct deduced_started {};
template <class F>
struct deduced_started<F, std::void_t<typename started_of<typename call_arg<F>::type>::type>> {
  using type = typename started_of<typename call_arg<F>::type>::type;
};

template <class V, class F> struct start_value {
  using type = V;
};
template <class F> struct start_value<deduce_started, F> {
  static_assert(requires { typename deduced_started<std::decay_t<F>>::type; },
                "palitra::start: cannot deduce V from the callable (a generic lambda, or "
                "no parameter of type started<V>&); name it: start<V>(f)");
  using type = typename deduced_started<std::decay_t<F>>::type;
};

/// The V that start uses: the explicit one, else the deduced one.
template <class V, class F> using start_value_t = typename start_value<V, F>::type;

/// f(started<V>&) returns a task.
template <class F, class V>
concept start_factory =
    std::invocable<std::decay_t<F>&, started<V>&> &&
    is_task_v<std::invoke_result_t<std::decay_t<F>&, started<V>&>>;

template <class X> struct task_result {};
template <class T> struct task_result<task<T>> { using type = T; };

} // namespace detail

/// The handle runner::start passes to its task: the task calls set() once it
/// is ready (a listener bound, a pool filled), start returns to its caller
/// with the value, and the task runs on (anyio's TaskStatus.started).
/// Thread: the loop thread, inside the task. Lifetime: owned by the root
/// frame start builds, so it is valid for the task's whole life; not
/// copyable or movable.
template <class V> class started {
public:
  started(const started&) = delete;
  started& operator=(const started&) = delete;

  /// Hand `v` to start's caller and release it (pending -> set).
  /// Throws: palitra::error if set() was already called (`v` is dropped).
  void set(V v) {
    std::lock_guard<std::mutex> lk(st_->m);
    if (st_->ph == detail::start_state<V>::phase::pending) st_->value.emplace(std::move(v));
    detail::started_access::mark_set(*st_);
  }

private:
  friend struct detail::started_access;
  explicit started(detail::start_state<V>* s) noexcept : st_(s) {}
  detail::start_state<V>* st_; // kept alive by the root frame's start_end_notice
};

/// started<void>: set() only releases the caller.
template <> class started<void> {
public:
  started(const started&) = delete;
  started& operator=(const started&) = delete;

  /// Release start's caller. Throws: palitra::error if already called.
  void set() {
    std::lock_guard<std::mutex> lk(st_->m);
    detail::started_access::mark_set(*st_);
  }

private:
  friend struct detail::started_access;
  explicit started(detail::start_state<void>* s) noexcept : st_(s) {}
  detail::start_state<void>* st_; // as started<V>::st_
};

/// What runner::start returns: the future of the task, which runs on, and
/// the value it passed to set(). An aggregate, so `auto [fut, port] =
/// r.start(...)` works. started_result<T, void> has only `future`.
template <class T, class V = void> struct started_result {
  palitra::future<T> future;
  V value;
};
template <class T> struct started_result<T, void> {
  palitra::future<T> future;
};

} // namespace palitra
