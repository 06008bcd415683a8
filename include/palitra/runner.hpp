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
#include <new>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <palitra/detail/frame_allocator.hpp>
#include <palitra/detail/root_op.hpp>
#include <palitra/detail/runner_core.hpp>
#include <palitra/error.hpp>
#include <palitra/outcome.hpp>
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
};

template <class T> class future;
class runner;

namespace detail {
struct token_link;
/// future::get_cancel_token and the future's end (non-template, runner.cpp).
std::shared_ptr<token_link> make_token_link(runner_core& c, root_op& op, const wait_ref& w);
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

namespace detail {

struct runner_internals {
  static void abandon(runner& r) noexcept;
};

// The stored arguments reach the callable as rvalues, as std::thread passes
// them, so it may take move-only arguments by value; the callable itself is
// invoked as an lvalue (it lives in the frame for the coroutine's life).
template <class F, class... Args>
concept task_factory =
    std::invocable<std::decay_t<F>&, std::decay_t<Args>...> &&
    is_task_v<std::invoke_result_t<std::decay_t<F>&, std::decay_t<Args>...>>;

template <class D> struct is_duration : std::false_type {};
template <class R, class P> struct is_duration<std::chrono::duration<R, P>> : std::true_type {};
template <class D>
inline constexpr bool is_duration_v = is_duration<std::remove_cvref_t<D>>::value;

template <class... A> struct last_type {
  using type = void; // no arguments: gather() -> std::tuple<>
};
template <class A> struct last_type<A> { using type = A; };
template <class A, class B, class... R> struct last_type<A, B, R...> : last_type<B, R...> {};

/// `tasks...` or `tasks..., duration` (the variadic gather's arguments).
template <class... A>
concept gather_args =
    sizeof...(A) == 0 ||
    ([] {
      constexpr std::size_t n = sizeof...(A);
      std::size_t i = 0;
      return ((++i, is_task_v<A> || (i == n && is_duration_v<A>)) && ...);
    }());

/// `f(std::move(args)...)` in a frame that owns f and args for the
/// coroutine's life (the callable's own coroutine may refer to either).
template <class F, class... Args>
std::invoke_result_t<F&, Args...> invoke_in_frame(F f, Args... args) {
  co_return co_await std::invoke(f, std::move(args)...);
}

/// now + d, saturating (a huge timeout means "no practical deadline").
template <class Rep, class Period>
std::chrono::steady_clock::time_point deadline_after(std::chrono::duration<Rep, Period> d) {
  using clock = std::chrono::steady_clock;
  const auto now = clock::now();
  constexpr auto max_span = std::chrono::hours(24 * 365 * 100);
  if (d > max_span) return now + max_span;
  return now + std::chrono::ceil<clock::duration>(d);
}

/// After A1: the call's value, its own exception, or the error that its
/// cancellation maps to (timeout_error, cancelled_error, runner_closed_error).
/// The frame is already gone (the loop harvested it before P1).
template <class T> T take_call(call_result<T>& op, const char* what) {
  if (op.kind_ == end_kind::cancelled || op.kind_ == end_kind::rejected)
    throw_cancelled_end(op, what);
  if constexpr (std::is_void_v<T>) op.take();
  else return op.take();
}

void report_unhandled(loop& l, std::exception_ptr e) noexcept;

/// Class-level allocation through the frame allocator (frame_allocator.hpp):
/// submit/spawn/post roots then cost no call to the host's global operator
/// new, like the coroutine frames they own. frame_alloc throws
/// std::bad_alloc, as a global `new` would. Over-aligned objects (a post()ed
/// callable with alignas > the default new alignment) keep the global
/// aligned operator new, since frame_alloc guarantees only that alignment.
struct frame_allocated {
  static void* operator new(std::size_t size) { return frame_alloc(size); }
  static void operator delete(void* p, std::size_t size) noexcept { frame_free(p, size); }
  static void* operator new(std::size_t size, std::align_val_t al) {
    return ::operator new(size, al);
  }
  static void operator delete(void* p, std::size_t, std::align_val_t al) noexcept {
    // The unsized form: clang before 19 declares the sized global delete only
    // with -fsized-deallocation, and this header must build with any flags.
    ::operator delete(p, al);
  }
};

template <class F> struct post_node final : queue_node, frame_allocated {
  template <class G> explicit post_node(G&& g) : fn(std::forward<G>(g)) { dispatch = &run; }
  static void run(queue_node* self, loop& l) noexcept {
    auto* n = static_cast<post_node*>(self);
    try {
      n->fn();
    } catch (...) {
      report_unhandled(l, std::current_exception());
    }
    delete n;
  }
  F fn;
};

/// A call that owns itself: submit (until its future lets go) and spawn.
/// The op owns the frame from construction (the task is released into it).
template <class T> struct heap_root final : call_result<T>, frame_allocated {
  heap_root(task<T>&& t, root_mode m) : call_result<T>(task_access::release(std::move(t)), m) {
    this->finish_ = [](root_op& op, finish_step step) noexcept {
      if (step == finish_step::harvest)
        call_result<T>::harvest(op);
      else
        delete static_cast<heap_root*>(&op); // ~call_result destroys the frame
    };
  }
};

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
  template <class T> future<T> submit(task<T> t);

  /// Fire and forget. An escaping exception goes to on_unhandled_error;
  /// close() cancels and awaits spawned tasks (and does not report those).
  void spawn(task<void> t) {
    check_task(t, "palitra::runner::spawn");
    auto* op = new detail::heap_root<void>(std::move(t), detail::root_mode::spawned);
    op->stamp();
    try {
      detail::submit_root(*core_, *op, "palitra::runner::spawn");
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
      detail::submit_node(*core_, *n, "palitra::runner::post");
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
    // us (close() then ~runner), so the wait reads only op and w.hints.
    const detail::wait_ref w = detail::wait_ref_of(*core_);
    detail::check_blocking_wait(w, what);
    check_task(t, what);
    // The op owns the frame from here: if the submit is rejected, ~call_result
    // destroys it (nothing ran); once pushed, the loop destroys it before P1.
    detail::call_result<T> op(detail::task_access::release(std::move(t)),
                              detail::root_mode::blocking);
    if (deadline != nullptr) op.set_deadline(*deadline);
    op.stamp();
    detail::submit_root(*core_, op, what);
    // The wait is measured from the submit stamp: no clock read here.
    detail::await_slot(*w.hints, op, op.submitted_at_, op.cpu_);
    return detail::take_call(op, what);
  }

  detail::runner_core* core_;
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
    // A finished op never touches the runner: get() stays valid after the
    // runner was closed and destroyed (close() publishes every call).
    // Even when ready: a blocking call on the loop thread is refused whatever
    // the timing, so the misuse shows on the first run, not the unlucky one.
    detail::check_not_loop_thread(w_, "palitra::future::get");
    if (!st_->slot_.is_done()) {
      // From here the call may be published at any moment, and the runner
      // destroyed right after (close() then ~runner): touch only w_ and st_.
      detail::check_blocking_wait(w_, "palitra::future::get");
      detail::await_slot(*w_.hints, *st_, std::chrono::steady_clock::now(),
                         detail::current_cpu_tag());
    }
    drop_link();
    std::unique_ptr<state> s(std::exchange(st_, nullptr));
    return detail::take_call<T>(*s, "palitra::future::get");
  }

  /// Wait up to `d`; true if the task has ended. Throws: reentrancy_error on
  /// the runner's loop thread.
  template <class Rep, class Period> bool wait_for(std::chrono::duration<Rep, Period> d) {
    require("palitra::future::wait_for");
    detail::check_not_loop_thread(w_, "palitra::future::wait_for");
    if (st_->slot_.is_done()) return true;
    detail::check_blocking_wait(w_, "palitra::future::wait_for"); // as in get()
    return st_->slot_.wait_until(detail::deadline_after(d), detail::caller_spin(*w_.hints));
  }

  /// True if the task has ended (get() will not block).
  bool ready() const noexcept { return st_ != nullptr && st_->slot_.is_done(); }

  /// Request cancellation (never blocks); the task sees cancelled_error at
  /// its next cancellation point. Thread: the owner's, like every member; to
  /// cancel from another thread, use get_cancel_token().
  void cancel() noexcept {
    // Not in a forked child: the loop that owns the op does not exist there,
    // and its copied wake fd is the parent's.
    if (st_ != nullptr && !st_->slot_.is_done() && !detail::inherited(w_))
      detail::request_cancel(*core_, *st_);
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
  using state = detail::heap_root<T>;

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
    if (!s->slot_.is_done()) {
      if (detail::inherited(w_)) {
        // A forked child: the loop thread that owns the op does not exist
        // here, so nothing can end it. Leak it rather than hang.
        return;
      }
      if (detail::on_loop_thread(*core_)) {
        detail::detach_on_loop(*core_, *s); // the loop reclaims it at the end
        return;
      }
      detail::request_cancel(*core_, *s);
      s->slot_.wait(detail::caller_spin(*w_.hints));
    }
    delete s; // the frame is gone already: the loop harvested it before P1
  }

  detail::runner_core* core_ = nullptr;
  detail::wait_ref w_; // what a wait reads instead of the runner (runner_core.hpp)
  state* st_ = nullptr;
  std::shared_ptr<detail::token_link> link_; // only once a cancel_token was asked for
};

template <class T> future<T> runner::submit(task<T> t) {
  check_task(t, "palitra::runner::submit");
  auto* op = new detail::heap_root<T>(std::move(t), detail::root_mode::future);
  op->stamp();
  // Everything the future needs is read before the push: once pushed, the
  // call may be published and this runner destroyed (close() then ~runner)
  // before we return, so not even this->core_ may be read afterwards.
  detail::runner_core* const c = core_;
  const detail::wait_ref w = detail::wait_ref_of(*c);
  try {
    detail::submit_root(*c, *op, "palitra::runner::submit");
  } catch (...) {
    delete op;
    throw;
  }
  return future<T>(c, w, op);
}

} // namespace palitra
