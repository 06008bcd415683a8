// palitra — the wall between the typed API (runner, future) and the call
// protocol in core/.
//
// A top-level call (`run`, `gather*`, `submit`, `spawn`) is a call record
// (core/call.hpp: queue node, registry links, timer, cancellation chain,
// completion slot, the call_state machine) plus a typed part that only the
// templates know: where the result lands. Here the record is opaque storage
// of a fixed size (core/call.cpp checks the real record fits), reached
// through the non-template functions below. So the protocol and its layout
// are not part of any user's build: changing them changes no installed
// header, as long as the record still fits.
//
// The typed part's one duty (finish_fn, harvest): on the loop thread, just
// before the caller is released, move the result or the exception out of
// the promise into call<T>; the core then destroys the frame there. So a
// frame never outlives its coroutine's end, nor close() (DESIGN.md §3, §4).
#pragma once

#include <chrono>
#include <concepts>
#include <functional>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <new>
#include <type_traits>
#include <utility>
#include <variant>

#include <palitra/detail/frame_allocator.hpp>
#include <palitra/task.hpp>

namespace palitra::detail {

class loop;
class runner_core;
/// What a waiting caller reads of its loop (core/loop.hpp): pooled memory
/// that outlives the runner.
struct wait_hints;

/// A submission-queue entry; `dispatch` runs on the loop thread when popped.
struct queue_node {
  queue_node* next = nullptr;
  void (*dispatch)(queue_node* self, loop& l) noexcept = nullptr;
};

/// Who waits for the call: a blocked caller, a future, nobody (spawned), or
/// nobody any more (detached: a future dropped unwaited on its loop thread;
/// only the loop makes that change).
enum class call_mode : std::uint8_t { blocking, future, spawned, detached };
/// What the loop asks of a call's typed part (finish_fn).
enum class finish_step : std::uint8_t {
  harvest, ///< move the result out of the promise (before P1); return what was stored
  reclaim  ///< free the whole call (spawned, or a future dropped on the loop)
};
/// Which member of call<T>'s storage holds something.
enum class stored_kind : std::uint8_t { nothing, value, error };

/// Storage for the call record. Its size keeps call<int> on the heap at
/// 256 bytes, mimalloc's size class (bench/inflight.cpp measured 52 B more
/// per in-flight call at 264); core/call.cpp static_asserts the fit.
inline constexpr std::size_t call_record_bytes = 248;
struct alignas(8) call_record_storage {
  std::byte bytes_[call_record_bytes];
};

using finish_fn = stored_kind (*)(call_record_storage&, finish_step) noexcept;

/// What a future keeps so that it can wait without touching its runner,
/// which may be destroyed as soon as the call is published (close() then
/// ~runner): the wait hints, the fork generation the runner was born in, and
/// the runner's id (unique in the process and never reused: an address could
/// be reused by a later runner and turn a reentrancy check into a false alarm).
struct wait_ref {
  wait_hints* hints = nullptr;
  std::uint32_t born = 0;
  std::uint64_t runner_id = 0;
};

// ---- the call ABI (core/call.cpp). `what` names the public call in errors.

/// Builds the record in `s`; the record owns `frame` from here.
void call_init(call_record_storage& s, std::coroutine_handle<> frame, promise_base& p,
               call_mode m, finish_fn f) noexcept;
void call_set_deadline(call_record_storage& s, std::chrono::steady_clock::time_point d) noexcept;
/// Take it while c is certainly alive: before the submission.
wait_ref call_wait_ref(const runner_core& c) noexcept;
/// Stamps the call (time, thread, CPU), then gate + push + wake elision.
/// Throws runner_closed_error (closed, closing, inherited across fork());
/// nothing ran then and the record is untouched.
void call_submit(runner_core& c, call_record_storage& s, const char* what);
/// Push any node (post). Same gate and errors as call_submit.
void node_submit(runner_core& c, queue_node& n, const char* what);
/// Throws reentrancy_error on the loop thread of w's runner (by id), and
/// runner_closed_error in a forked child (by w's generation); reads no runner.
void check_blocking_wait(const wait_ref& w, const char* what);
/// Throws reentrancy_error on the loop thread of w's runner (by id).
void check_not_loop_thread(const wait_ref& w, const char* what);
/// Block until the call is published (A1). A blocking call measures from
/// its submit stamp, a future's get() from now. Reads only the record and
/// the hint block, never the runner.
void call_wait(const wait_ref& w, call_record_storage& s, bool from_submit) noexcept;
/// As call_wait, up to `deadline`; true once published.
bool call_wait_until(const wait_ref& w, call_record_storage& s,
                     std::chrono::steady_clock::time_point deadline) noexcept;
/// A1: true once published (acquire).
bool call_done(const call_record_storage& s) noexcept;
/// future::cancel / cancel_token (any thread, never blocks).
void call_cancel(runner_core& c, call_record_storage& s) noexcept;
/// A future dropped unwaited on its loop thread: the loop reclaims the call.
void call_detach_on_loop(runner_core& c, call_record_storage& s) noexcept;
bool on_loop_thread(const runner_core& c) noexcept;
/// True in a forked child for a runner born before the fork; reads no runner.
bool inherited(const wait_ref& w) noexcept;
/// After A1: what harvest stored, or throws the error a cancellation maps
/// to (timeout_error, cancelled_error, runner_closed_error).
stored_kind call_end(const call_record_storage& s, const char* what);
/// What harvest stored (nothing before it; for call<T>'s destructor).
stored_kind call_stored(const call_record_storage& s) noexcept;
/// The frame while the record still owns it; null once the loop destroyed it.
std::coroutine_handle<> call_frame(const call_record_storage& s) noexcept;
/// The owner's last act on a call (~call): frees the memory of a blocking
/// call's frame, which the loop destroyed but handed back so that it returns
/// to this thread's frame cache (core/alloc/frame_defer.hpp).
void call_release(call_record_storage& s) noexcept;

/// A call with its typed part: the result lands here (harvest). Blocking
/// calls keep one on the caller's stack; futures and spawned tasks use
/// heap_call (below).
template <class T> class call : public call_record_storage {
public:
  using value_type = result_t<T>;
  call(task<T>&& t, call_mode m, finish_fn f = &finish) noexcept {
    const auto h = task_access::release(std::move(t));
    call_init(*this, h, h.promise(), m, f);
  }
  ~call() {
    const stored_kind k = call_stored(*this);
    if (k == stored_kind::value) value_.~value_type();
    else if (k == stored_kind::error) error_.~exception_ptr();
    // Still here only if the call was never pushed (a rejected submit): no
    // code of it ran. Otherwise the loop destroyed it before P1.
    if (const auto f = call_frame(*this)) f.destroy();
    call_release(*this);
  }
  call(const call&) = delete;
  call& operator=(const call&) = delete;

  /// After A1: the value, the task's own exception, or the cancellation's error.
  T take(const char* what) {
    if (call_end(*this, what) == stored_kind::error) std::rethrow_exception(error_);
    if constexpr (!std::is_void_v<T>) return std::move(value_);
  }

  /// The typed part of the loop's finish: harvest only (a stack call is never
  /// reclaimed by the loop).
  static stored_kind finish(call_record_storage& s, finish_step) noexcept { return harvest(s); }

  /// Loop thread, before P1, for a call that ended by itself: the result
  /// (moved, never copied: guarantee 5) or its exception into this call.
  static stored_kind harvest(call_record_storage& s) noexcept {
    auto& self = static_cast<call&>(s);
    auto& p = std::coroutine_handle<promise<T>>::from_address(call_frame(s).address()).promise();
    if (!p.failed()) {
      try {
        ::new (static_cast<void*>(&self.value_)) value_type(p.take_result());
        return stored_kind::value;
      } catch (...) {
        // The result's move constructor threw: the call fails with that.
        ::new (static_cast<void*>(&self.error_)) std::exception_ptr(std::current_exception());
        return stored_kind::error;
      }
    }
    ::new (static_cast<void*>(&self.error_)) std::exception_ptr(p.exception());
    return stored_kind::error;
  }

private:
  union {
    value_type value_;
    std::exception_ptr error_;
  };
};

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

/// A call that owns itself: submit (until its future lets go) and spawn.
template <class T> struct heap_call final : call<T>, frame_allocated {
  heap_call(task<T>&& t, call_mode m) : call<T>(std::move(t), m, &finish) {}
  static stored_kind finish(call_record_storage& s, finish_step step) noexcept {
    if (step == finish_step::harvest) return call<T>::harvest(s);
    delete static_cast<heap_call*>(&s); // ~call destroys the frame if still there
    return stored_kind::nothing;
  }
};

// ---- building calls: what runner's templates need besides the ABI

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

void report_unhandled(loop& l, std::exception_ptr e) noexcept;

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

} // namespace palitra::detail
