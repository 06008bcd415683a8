// palitra — to_thread: run a blocking callable on the runner's worker pool
// and await its result on the loop (asyncio.to_thread).
//
// Shape: to_thread() is a plain function. It moves (or copies) the callable
// into a heap job at once, then returns a task<R> that owns the job; the
// task's one await hands the job to the pool (J1 in
// core/blocking/blocking_job.hpp, which holds the protocol) and is resumed
// through the loop's run queue with the value or the exception.
// Allocations per call: two, both from palitra's frame allocator: the job
// (callable + outcome + the 64-byte record) and the returned task's frame.
// The job cannot live in the frame: a cancelled awaiter resumes at once and
// its frame ends while the callable may still run.
//
// g++ 12 (measured here, /tmp repro with a probe type and ASan): in
// `co_await palitra::to_thread([s = std::string(100, 'x')] { ... })` the
// closure temporary is constructed once, copied byte for byte into the
// awaiting coroutine's frame, and destroyed twice (ASan: double free of the
// captured string). It happens in the awaiting coroutine before to_thread is
// called: a plain function taking F&& or F, a coroutine taking F by value,
// and a plain awaitable all show the same one-constructor, two-destructor
// trace, as does an aggregate temporary (S{P()}); a class temporary with a
// constructor, a named closure, and a closure built in a statement without
// co_await are fine. No shape of to_thread can repair an object corrupted
// before it is called, so on gcc <= 12 (PALITRA_GCC_CO_AWAIT_TEMPORARY_BUG,
// config.hpp) to_thread rejects, at compile time, an rvalue callable that is
// not trivially copyable (a bytewise copy of a trivially copyable one is
// harmless): pass a named callable (copied), or palitra::moved(f) (moved,
// for move-only captures). Clang builds accept every form.
#pragma once

#include <chrono>
#include <concepts>
#include <coroutine>
#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include <palitra/config.hpp>
#include <palitra/detail/blocking.hpp>
#include <palitra/detail/call.hpp>
#include <palitra/detail/cancel.hpp>
#include <palitra/detail/loop_hooks.hpp>
#include <palitra/task.hpp>

namespace palitra {

namespace detail {

/// A callable to be moved into a to_thread job (palitra::moved).
template <class G> class moved_ref {
public:
  explicit moved_ref(G& g) noexcept : p_(&g) {}
  G& get() const noexcept { return *p_; }

private:
  G* p_; // trivially copyable: gcc 12's bytewise copy of it is harmless
};

template <class F> struct blocking_traits {
  using callable = F;
  static constexpr bool by_move_ref = false;
};
template <class G> struct blocking_traits<moved_ref<G>> {
  using callable = G;
  static constexpr bool by_move_ref = true;
};
/// What the job stores: the decayed callable, or the target of moved(f).
template <class F> using blocking_callable_t = typename blocking_traits<std::decay_t<F>>::callable;

/// Can `to_thread(std::forward<F>(f))` be called safely from inside a
/// co_await expression on this compiler (see the header comment)?
template <class F>
inline constexpr bool to_thread_arg_ok_v =
#if defined(PALITRA_GCC_CO_AWAIT_TEMPORARY_BUG)
    std::is_lvalue_reference_v<F> || std::is_trivially_copyable_v<std::remove_cvref_t<F>>;
#else
    true;
#endif

/// The typed part that depends only on the result: where the outcome lands.
template <class R> struct blocking_result : blocking_record_storage {
  std::optional<result_t<R>> value_;
  std::exception_ptr error_;

  /// After the completion (J5): the value (moved) or the callable's own
  /// exception, type preserved.
  R take() {
    if (error_) std::rethrow_exception(error_);
    if constexpr (!std::is_void_v<R>) return std::move(*value_);
  }
};

/// One job: the callable and its outcome (one allocation).
template <class F, class R> struct blocking_job final : blocking_result<R>, frame_allocated {
  template <class G> explicit blocking_job(G&& g) : fn_(std::forward<G>(g)) {
    blocking_init(*this, table);
  }
  ~blocking_job() {
    if (alive_) fn_.~F();
  }
  blocking_job(const blocking_job&) = delete;
  blocking_job& operator=(const blocking_job&) = delete;

  static void run(blocking_record_storage& s) noexcept {
    auto& j = static_cast<blocking_job&>(s);
    try {
      if constexpr (std::is_void_v<R>) {
        std::invoke(j.fn_);
        j.value_.emplace();
      } else {
        j.value_.emplace(std::invoke(j.fn_));
      }
    } catch (...) {
      j.error_ = std::current_exception();
    }
    // The captures die here, on the worker, right after the call.
    j.alive_ = false;
    j.fn_.~F();
  }
  static void destroy(blocking_record_storage& s) noexcept {
    delete static_cast<blocking_job*>(&s);
  }
  static constexpr blocking_ops table{&run, &destroy};

  union {
    F fn_;
  };
  bool alive_ = true; // written by the job's owner of the moment (blocking_job.hpp)
};

/// Owns a job that has not reached its awaiter yet (the task never started,
/// or its frame could not be allocated).
template <class R> class blocking_handle {
public:
  explicit blocking_handle(blocking_result<R>* j) noexcept : j_(j) {}
  blocking_handle(blocking_handle&& o) noexcept : j_(std::exchange(o.j_, nullptr)) {}
  blocking_handle& operator=(blocking_handle&&) = delete;
  ~blocking_handle() {
    if (j_ != nullptr) blocking_destroy(*j_);
  }
  blocking_result<R>* release() noexcept { return std::exchange(j_, nullptr); }

private:
  blocking_result<R>* j_;
};

/// The await of a to_thread task. Loop thread only.
///   not cancelled: the job goes to the pool (J1) and the chain's hook is
///   armed; the completion (J5) disarms it and schedules the resume.
///   cancelled while the job is pending: the job is detached (J3), the
///   awaiter is scheduled and throws cancelled_error; the callable runs on
///   (or never starts), its outcome is dropped by the worker.
///   cancelled after the job finished: the completion is already on its way;
///   it resumes the awaiter, which throws cancelled_error (cancel.hpp I2).
///   destroyed while suspended: abandons the job (J3, or J5 frees it).
/// Every resume goes through the run queue, never inline (cancel.hpp T2).
template <class R> class blocking_awaiter {
public:
  explicit blocking_awaiter(blocking_result<R>* j) noexcept : job_(j) {}
  blocking_awaiter(const blocking_awaiter&) = delete;
  blocking_awaiter& operator=(const blocking_awaiter&) = delete;
  ~blocking_awaiter() {
    if (job_ == nullptr) return; // detached by on_cancel: the worker frees it
    if (submitted_ && !completed_) {
      if (hooked_) chain_->disarm(); // keeps cancel.hpp I1
      blocking_abandon(*job_);
    } else {
      blocking_destroy(*job_);
    }
  }

  bool await_ready() const noexcept { return false; }

  template <class P> bool await_suspend(std::coroutine_handle<P> h) {
    loop_ = &require_loop("palitra::to_thread");
    chain_ = chain_of(h);
    if (chain_ != nullptr && chain_->cancelled()) return false; // never starts; throws in resume
    item_.handle = h;
    item_.chain = chain_;
    blocking_submit(*loop_, *job_, &on_done, this,
                    chain_ != nullptr ? chain_->earliest_deadline()
                                      : std::chrono::steady_clock::time_point::max());
    submitted_ = true;
    if (chain_ != nullptr) {
      chain_->arm(&on_cancel, this);
      hooked_ = true;
    }
    return true;
  }

  R await_resume() {
    if (job_ == nullptr || (chain_ != nullptr && chain_->cancelled()))
      throw_cancelled("palitra::to_thread");
    return job_->take();
  }

private:
  static void on_done(void* ctx) noexcept { // J5, from the completion's dispatch
    auto* self = static_cast<blocking_awaiter*>(ctx);
    self->completed_ = true;
    if (self->hooked_) {
      self->chain_->disarm();
      self->hooked_ = false;
    }
    schedule(*self->loop_, self->item_);
  }
  static void on_cancel(void* ctx) noexcept {
    auto* self = static_cast<blocking_awaiter*>(ctx);
    self->hooked_ = false; // deliver() already cleared the hook
    if (blocking_cancel(*self->job_)) { // J3: no longer ours
      self->job_ = nullptr;
      schedule(*self->loop_, self->item_);
    }
    // else: finished; on_done resumes us soon and await_resume throws (I2).
  }

  blocking_result<R>* job_;
  loop* loop_ = nullptr;
  cancel_state* chain_ = nullptr;
  ready_item item_;
  bool submitted_ = false;
  bool completed_ = false;
  bool hooked_ = false;
};

template <class R> task<R> run_blocking(blocking_handle<R> h) {
  co_return co_await blocking_awaiter<R>(h.release());
}

} // namespace detail

/// Marks a named callable to be *moved* into a to_thread job, for
/// move-only captures: `co_await palitra::to_thread(palitra::moved(f))`.
/// f is moved from when to_thread is called. Works with every compiler; on
/// gcc 12 it is the way to pass a callable that cannot be copied.
template <class G> detail::moved_ref<G> moved(G& f) noexcept { return detail::moved_ref<G>(f); }

/// Run `f()` on the runner's blocking pool and resume with its value, or
/// rethrow its exception (type preserved). void -> task<void>.
/// Thread: call anywhere (it only builds the task); the task must run on a
/// loop thread (co_awaited in a task, or passed to run/submit/with_timeout);
/// awaited elsewhere it throws palitra::error naming palitra::to_thread.
/// The callable runs on a worker thread of the runner whose loop awaits it
/// (runner_options::blocking_threads), never on the loop.
/// Blocks: the loop, no; a worker, for as long as f runs.
/// Throws: f's exception; cancelled_error; palitra::error if the pool has no
/// thread and cannot start one.
/// Cancel: yes. The awaiting task resumes at once with cancelled_error; f is
/// not interrupted (a job not yet started never starts), its result is
/// dropped, and this_task::cancelled() inside f turns true (also once the
/// awaiting chain's deadline has passed).
/// Lifetime: f is moved (rvalue) or copied (lvalue) into the job when
/// to_thread is called and destroyed on the worker right after it ran.
/// close() waits for a callable that is still running (it joins the pool).
/// On gcc <= 12 a non-trivially-copyable rvalue f does not compile (header
/// comment): name it, or use palitra::moved(f).
template <class F>
  requires std::invocable<detail::blocking_callable_t<F>&>
auto to_thread(F&& f) -> task<std::invoke_result_t<detail::blocking_callable_t<F>&>> {
  using C = detail::blocking_callable_t<F>;
  using R = std::invoke_result_t<C&>;
  static_assert(!std::is_reference_v<R>,
                "palitra::to_thread: the callable must return a value, not a reference "
                "(the result crosses threads; return a copy or a pointer)");
  static_assert(detail::to_thread_arg_ok_v<F>,
                "palitra::to_thread: g++ 12 miscompiles a capturing closure (or aggregate) "
                "temporary in a co_await expression: it is copied byte for byte and destroyed "
                "twice (include/palitra/to_thread.hpp). Name the callable first: "
                "`auto f = [...] { ... }; co_await palitra::to_thread(f);` (copied), or "
                "`palitra::to_thread(palitra::moved(f))` (moved, for move-only captures).");
  detail::blocking_result<R>* j;
  if constexpr (detail::blocking_traits<std::decay_t<F>>::by_move_ref)
    j = new detail::blocking_job<C, R>(std::move(f.get()));
  else
    j = new detail::blocking_job<C, R>(std::forward<F>(f));
  return detail::run_blocking<R>(detail::blocking_handle<R>(j));
}

} // namespace palitra
