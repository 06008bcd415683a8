// palitra — runner: one persistent event loop on a background thread, and
// the calls that let synchronous code run coroutines on it.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <palitra/detail/call.hpp>
#include <palitra/error.hpp>
#include <palitra/future.hpp>
#include <palitra/outcome.hpp>
#include <palitra/started.hpp>
#include <palitra/task.hpp>
#include <palitra/when.hpp>

namespace palitra {

/// One call in flight, as runner::in_flight_calls() reports it.
struct call_info {
  enum class call_kind { blocking, future, spawned };
  call_kind kind = call_kind::blocking;
  std::thread::id caller;       ///< the thread that submitted it
  std::chrono::nanoseconds age{0}; ///< since it was submitted
  bool cancelling = false;      ///< cancellation was requested (timeout, cancel, close)
};

/// Options of a runner. Defaults are documented with the measurements behind
/// them in README.md ("Tuning").
struct runner_options {
  /// Name of the loop thread (the kernel keeps the first 15 bytes).
  std::string name = "palitra";
  /// At most how long a blocking caller hands its CPU over with sched_yield
  /// while the loop works, before it sleeps on its completion slot. The
  /// budget adapts below this ceiling (stats().caller_spin_budget): calls
  /// that outlast it halve it, one that ends within it restores it.
  /// 0: sleep at once.
  std::chrono::nanoseconds caller_spin = std::chrono::microseconds(50);
  /// At most how long the idle loop keeps yielding for new submissions
  /// before it blocks in the reactor (and a producer must then write the
  /// wake fd). Adapts like caller_spin, to the gaps between submissions.
  std::chrono::nanoseconds loop_spin = std::chrono::microseconds(50);
  /// Receives exceptions that escape spawned tasks and posted callables
  /// (on the loop thread). Empty: one line on stderr.
  std::function<void(std::exception_ptr)> on_unhandled_error;
  /// Loop-stall warning (asyncio's slow-callback warning): one resume of a
  /// coroutine that keeps the loop busy longer than this is reported.
  /// 0 (the default) turns it off, and then it costs nothing.
  std::chrono::nanoseconds stall_threshold{0};
  /// Receives each stall's duration, on the loop thread. Empty: one line on
  /// stderr.
  std::function<void(std::chrono::nanoseconds)> on_stall;
  /// close() waits until every call has unwound, however long that takes: a
  /// task that swallows cancelled_error in a loop keeps it waiting (returning
  /// earlier would let the task's code run after close(), which §4 of the
  /// contract forbids). When it has waited this long, the calls still in
  /// flight are reported once, so such a task can be found. 0: never.
  std::chrono::nanoseconds close_warning = std::chrono::seconds(10);
  /// Receives that report on the loop thread. Empty: one line on stderr per
  /// call (kind, submitting thread, age).
  std::function<void(const std::vector<call_info>&)> on_slow_close;
  /// At most this many threads run palitra::to_thread callables at once
  /// (more jobs wait in the pool's queue). 0 (the default): min(32, CPUs + 4),
  /// asyncio's executor default: the pool serves blocking I/O, whose threads
  /// mostly wait, so a few more than the CPUs pay off, and the cap bounds a
  /// burst's cost. Threads start lazily (the first to_thread; then one more
  /// only when every one is busy), are named `<name>-blk`, and live until
  /// close(), which joins them.
  std::size_t blocking_threads = 0;
};

/// Counters of a runner. An accepted call ends in exactly one of completed,
/// failed, cancelled; submitted == completed + failed + cancelled + in_flight
/// holds exactly whenever the loop is quiescent.
struct runner_stats {
  std::uint64_t submitted = 0;       ///< top-level calls accepted
  std::uint64_t completed = 0;       ///< ended with a value
  std::uint64_t failed = 0;          ///< ended with their own exception
  std::uint64_t cancelled = 0;       ///< timeout, future::cancel, close
  std::uint64_t in_flight = 0;       ///< accepted and not yet ended
  std::uint64_t loop_wakeups = 0;    ///< wake-fd writes by producers
  std::uint64_t loop_iterations = 0; ///< passes of the loop
  /// Address-wait (futex) wakes the loop issued to blocking callers that had
  /// gone to sleep on their completion slot; a caller still in its yield
  /// phase needs none.
  std::uint64_t caller_wakes = 0;
  /// Submissions the loop found waiting at its last drain (the queue is
  /// empty right after a drain, so this is the depth it had), and the most
  /// ever found at once.
  std::uint64_t queue_depth = 0;
  std::uint64_t max_queue_depth = 0;
  /// Submit-to-start latency of calls (caller's submit to the loop's first
  /// resume), from a log-linear histogram: each figure is the upper bound
  /// of its bucket (within 1/8 of the value).
  std::chrono::nanoseconds start_latency_p50{0};
  std::chrono::nanoseconds start_latency_p99{0};
  std::chrono::nanoseconds start_latency_max{0};
  /// Resumes that exceeded runner_options::stall_threshold.
  std::uint64_t stalls = 0;
  /// The adaptive spin budgets now, between 0 and caller_spin / loop_spin:
  /// back at the ceiling as soon as a wait ends within it, halved by each
  /// wait that outlasts it (README.md, "Tuning").
  std::chrono::nanoseconds caller_spin_budget{0};
  std::chrono::nanoseconds loop_spin_budget{0};
  /// Threads of the to_thread pool now running (0 until the first
  /// to_thread, and again after close()).
  std::uint64_t blocking_threads = 0;
};

template <class T> class future;
class runner;

namespace detail {

struct runner_internals {
  static void abandon(runner& r) noexcept;
};

// The stored arguments reach the callable as rvalues, as std::thread passes
// them, so it may take move-only arguments by value; the callable itself is
// invoked as an lvalue (it lives in the frame for the coroutine's life).
} // namespace detail

/// An event loop on its own thread (Python palitra's EventLoopThreadRunner).
/// Thread: every member may be called from any number of threads at once.
/// Lifetime: not copyable or movable; the destructor calls close(). Do not
/// destroy a runner on its own loop thread (it cannot join itself; aborts).
class runner {
public:
  /// Starts the loop thread; returns once the loop is running.
  /// Throws: palitra::error with the std::error_code when the reactor, the
  /// wake fd or the thread cannot be created (nothing is left half-started).
  runner();
  explicit runner(runner_options options);
  ~runner();
  runner(const runner&) = delete;
  runner& operator=(const runner&) = delete;

  /// Run `t` on the loop; block; return its value or rethrow its exception.
  /// Blocks: yes. Throws: the task's exception; runner_closed_error (closed,
  /// or cancelled by close()); reentrancy_error on the loop thread.
  /// Lifetime: the frame is destroyed before this returns or throws.
  template <class T> T run(task<T> t) {
    return run_root(std::move(t), nullptr, "palitra::run");
  }

  /// As run(t); at the deadline the task is cancelled, awaited until its
  /// frame is gone, then timeout_error is thrown (a value published first is
  /// returned). A non-positive timeout still starts the task.
  template <class T, class Rep, class Period>
  T run(task<T> t, std::chrono::duration<Rep, Period> timeout) {
    const auto d = detail::deadline_after(timeout);
    return run_root(std::move(t), &d, "palitra::run(timeout)");
  }

  /// run(f(args...)) where f and args are moved into the root frame, so
  /// lambda captures live as long as the coroutine. Lvalue callables are
  /// copied; move-only callables are accepted.
  template <class F, class... Args>
    requires detail::task_factory<F, Args...>
  auto run(F&& f, Args&&... args) {
    return run(detail::invoke_in_frame<std::decay_t<F>, std::decay_t<Args>...>(
        std::forward<F>(f), std::forward<Args>(args)...));
  }

  /// Run tasks concurrently; std::tuple of results (`void` → monostate). The
  /// first failure cancels and awaits the siblings, then is rethrown. An
  /// optional trailing duration is a timeout for the whole group.
  template <class... A>
    requires detail::gather_args<A...>
  auto gather(A&&... args) {
    if constexpr (sizeof...(A) > 0 &&
                  detail::is_duration_v<typename detail::last_type<A...>::type>) {
      auto all = std::forward_as_tuple(std::forward<A>(args)...);
      return [&]<std::size_t... I>(std::index_sequence<I...>) {
        return run(when_all(std::move(std::get<I>(all))...), std::get<sizeof...(A) - 1>(all));
      }(std::make_index_sequence<sizeof...(A) - 1>{});
    } else {
      return run(when_all(std::move(args)...));
    }
  }

  /// gather over a vector: results in input order; empty in, empty out.
  template <class T> std::vector<detail::result_t<T>> gather(std::vector<task<T>> ts) {
    return run(when_all(std::move(ts)));
  }
  template <class T, class Rep, class Period>
  std::vector<detail::result_t<T>> gather(std::vector<task<T>> ts,
                                          std::chrono::duration<Rep, Period> timeout) {
    return run(when_all(std::move(ts)), timeout);
  }

  /// Never throws for a task's failure: one outcome per task, input order.
  /// With a timeout, throws timeout_error for the whole group (after
  /// cancelling and awaiting every task).
  template <class T> std::vector<outcome<T>> gather_settled(std::vector<task<T>> ts) {
    return run(when_all_settled(std::move(ts)));
  }
  template <class T, class Rep, class Period>
  std::vector<outcome<T>> gather_settled(std::vector<task<T>> ts,
                                         std::chrono::duration<Rep, Period> timeout) {
    return run(when_all_settled(std::move(ts)), timeout);
  }

  /// Start `t` on the loop without blocking (run_coroutine_threadsafe).
  /// Throws: runner_closed_error when closed or closing (nothing runs).
  template <class T> future<T> submit(task<T> t) {
    return submit_as(std::move(t), "palitra::runner::submit");
  }

  /// Start a loop service and wait until it is ready (anyio's start_task):
  /// `f(started<V>&)` returns a task<T>; it runs as if submitted, and start
  /// returns once the task called `set(v)`: the task's future (it runs on)
  /// and v. V is deduced from f's parameter `started<V>&`, or given:
  /// `r.start<int>(f)`. With V = void, the result has only `.future`.
  /// The callable is moved into the root frame (as run(f) does), and so is
  /// the handle, so both live as long as the task.
  /// Blocks: until set() or the task's end.
  /// Throws: if the task ended before set(), its exception (runner_closed_error
  /// if close() cancelled it), or palitra::error if it ended with a value;
  /// runner_closed_error when closed or closing (nothing runs);
  /// reentrancy_error on the loop thread.
  /// Lifetime: the future is a submit()'s: destroying it unread cancels the
  /// task and waits until its frame is gone.
  template <class V = detail::deduce_started, class F>
    requires detail::start_factory<F, detail::start_value_t<V, F>>
  auto start(F&& f) {
    return start_impl<detail::start_value_t<V, F>>(std::forward<F>(f), nullptr,
                                                   "palitra::runner::start");
  }

  /// As start(f); if set() has not come by `timeout`, the task is cancelled
  /// and awaited until its frame is gone, then timeout_error is thrown. A
  /// non-positive timeout still starts the task.
  template <class V = detail::deduce_started, class F, class Rep, class Period>
    requires detail::start_factory<F, detail::start_value_t<V, F>>
  auto start(F&& f, std::chrono::duration<Rep, Period> timeout) {
    const auto d = detail::deadline_after(timeout);
    return start_impl<detail::start_value_t<V, F>>(std::forward<F>(f), &d,
                                                   "palitra::runner::start(timeout)");
  }

  /// Fire and forget. An escaping exception goes to on_unhandled_error;
  /// close() cancels and awaits spawned tasks (and does not report those).
  void spawn(task<void> t) {
    check_task(t, "palitra::runner::spawn");
    auto* op = new detail::heap_call<void>(std::move(t), detail::call_mode::spawned);
    try {
      detail::call_submit(*core_, *op, "palitra::runner::spawn");
    } catch (...) {
      delete op;
      throw;
    }
  }
  template <class F>
    requires detail::task_factory<F> &&
             std::same_as<std::invoke_result_t<std::decay_t<F>&>, task<void>>
  void spawn(F&& f) {
    spawn(detail::invoke_in_frame<std::decay_t<F>>(std::forward<F>(f)));
  }

  /// Run a plain callable on the loop thread (call_soon_threadsafe); its
  /// exception goes to on_unhandled_error. Throws runner_closed_error when
  /// closed or closing.
  template <class F>
    requires std::invocable<std::decay_t<F>&>
  void post(F&& f) {
    auto* n = new detail::post_node<std::decay_t<F>>(std::forward<F>(f));
    try {
      detail::node_submit(*core_, *n, "palitra::runner::post");
    } catch (...) {
      delete n;
      throw;
    }
  }

  /// Stop accepting, cancel every call and spawned task, run the loop until
  /// all of them unwound, release their callers (value if it came first,
  /// else runner_closed_error), close every fd, join the thread.
  /// Idempotent; concurrent calls all return after the join.
  /// Throws: reentrancy_error on the loop thread (then it has no effect).
  void close();

  /// Graceful close: stop accepting at once (submit, run, spawn, post,
  /// start throw runner_closed_error from here), let the calls and spawned
  /// tasks already accepted run on for at most `grace`, then close() as
  /// above: cancel what is left (those calls end with runner_closed_error),
  /// unwind, join. Returns as soon as everything ended: with nothing in
  /// flight, at once. Nothing is cancelled during the grace, and
  /// this_task::cancelled() stays false until it ends.
  /// A later close() ends the grace at once (it returns after the join, as
  /// every closer does); a later close(grace) can shorten the grace, never
  /// lengthen it. A non-positive grace is close().
  /// Blocks: up to `grace` plus the unwinding.
  /// Throws: reentrancy_error on the loop thread (then it has no effect).
  template <class Rep, class Period> void close(std::chrono::duration<Rep, Period> grace) {
    close_until(detail::deadline_after(grace));
  }

  /// True once close() began (or in a forked child).
  bool closed() const noexcept;
  /// True on this runner's loop thread.
  bool on_loop_thread() const noexcept;
  /// A snapshot of the counters (see runner_stats).
  runner_stats stats() const;

  /// The calls in flight now (the stuck-call registry): kind, submitting
  /// thread, age. Blocks: until the loop answers (a loop stuck in a resume
  /// answers after it; the stall warning reports that case). Returns an
  /// empty list on a closed runner.
  std::vector<call_info> in_flight_calls() const;

private:
  template <class T> friend class future;
  friend struct detail::runner_internals;

  template <class T> static void check_task(const task<T>& t, const char* what) {
    if (!t) throw error(std::string(what) + ": the task is empty (moved-from); pass a task "
                                            "returned by a coroutine");
  }

  template <class T>
  T run_root(task<T> t, const std::chrono::steady_clock::time_point* deadline,
             const char* what) {
    // Taken first: once the call is pushed, the runner may be destroyed under
    // us (close() then ~runner), so the wait reads only the call and w.
    const detail::wait_ref w = detail::call_wait_ref(*core_);
    detail::check_blocking_wait(w, what);
    check_task(t, what);
    // The call owns the frame from here: if the submit is rejected, ~call
    // destroys it (nothing ran); once pushed, the loop destroys it before P1.
    detail::call<T> c(std::move(t), detail::call_mode::blocking);
    if (deadline != nullptr) detail::call_set_deadline(c, *deadline);
    detail::call_submit(*core_, c, what);
    detail::call_wait(w, c, true); // measured from the submit stamp
    return c.take(what);
  }

  template <class V, class F>
  auto start_impl(F&& f, const std::chrono::steady_clock::time_point* deadline,
                  const char* what) {
    using T = typename detail::task_result<
        std::invoke_result_t<std::decay_t<F>&, started<V>&>>::type;
    using phase = typename detail::start_state<V>::phase;
    // Before anything runs: as run() refuses a blocking call on the loop.
    detail::check_blocking_wait(detail::call_wait_ref(*core_), what);
    auto st = std::make_shared<detail::start_state<V>>();
    future<T> fut = submit_as(detail::start_root<V, std::decay_t<F>>(
                                  std::forward<F>(f), detail::start_end_notice<V>(st)),
                              what);
    // From here touch only fut and st: a close() may end the task and a
    // later ~runner destroy this runner while we wait (as in submit).
    std::unique_lock<std::mutex> lk(st->m);
    const auto signalled = [&] { return st->ph != phase::pending; };
    if (deadline == nullptr) {
      st->cv.wait(lk, signalled);
    } else if (!st->cv.wait_until(lk, *deadline, signalled)) {
      lk.unlock();
      { future<T> gone = std::move(fut); } // cancels, waits until the frame is gone
      throw timeout_error(std::string(what) + ": the task did not call set() in time");
    }
    if (st->ph == phase::set) {
      if constexpr (std::is_void_v<V>) {
        return started_result<T, V>{std::move(fut)};
      } else {
        return started_result<T, V>{std::move(fut), std::move(*st->value)};
      }
    }
    lk.unlock();
    // Ended first: its frame is gone already (the end is its destruction),
    // so get() waits only for the publish.
    (void)fut.get(); // its exception, or runner_closed_error if close() ended it
    throw error(std::string(what) +
                ": the task returned without calling set(); call set() once it is ready");
  }

  template <class T> future<T> submit_as(task<T> t, const char* what);

  detail::runner_core* core_;
  void close_until(std::chrono::steady_clock::time_point grace_end);
};

template <class T> future<T> runner::submit_as(task<T> t, const char* what) {
  check_task(t, what);
  auto* op = new detail::heap_call<T>(std::move(t), detail::call_mode::future);
  // Everything the future needs is read before the push: once pushed, the
  // call may be published and this runner destroyed (close() then ~runner)
  // before we return, so not even this->core_ may be read afterwards.
  detail::runner_core* const c = core_;
  const detail::wait_ref w = detail::call_wait_ref(*c);
  try {
    detail::call_submit(*c, *op, what);
  } catch (...) {
    delete op;
    throw;
  }
  return future<T>(c, w, op);
}

} // namespace palitra
