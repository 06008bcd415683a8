// palitra — the call ABI (include/palitra/detail/call.hpp): what the typed
// templates of runner and future call, with the record's layout and the
// protocols kept here, in core/.
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include <palitra/error.hpp>
#include <palitra/future.hpp>

#include "call.hpp"
#include "runner_core.hpp"

namespace palitra::detail {

/// The id of the runner whose loop runs on this thread, 0 elsewhere (runner.cpp).
std::uint64_t current_runner_id() noexcept;
/// Caller-side wait (loop.cpp, "cross-CPU spin", "adaptive spin").
void await_slot(wait_hints& h, call_record& op, std::chrono::steady_clock::time_point since,
                std::uint32_t cpu_tag) noexcept;

void call_init(call_record_storage& s, std::coroutine_handle<> frame, promise_base& p,
               call_mode m, finish_fn f) noexcept {
  ::new (static_cast<void*>(s.bytes_)) call_record(frame, p, m, f);
}

void call_set_deadline(call_record_storage& s, std::chrono::steady_clock::time_point d) noexcept {
  call_record& op = call_record::of(s);
  op.has_deadline_ = true;
  op.deadline_ = d;
}

wait_ref call_wait_ref(const runner_core& c) noexcept {
  return {&c.loop_.hints(), c.born(), c.id()};
}

bool inherited(const wait_ref& w) noexcept { return w.born != fork_generation(); }

namespace {
[[noreturn]] void throw_inherited(const char* what) {
  throw runner_closed_error(std::string(what) +
                            ": this runner was inherited across fork(); create a new runner "
                            "in the child (the global runner is recreated automatically)");
}

void submit_checked(runner_core& c, queue_node& n, const char* what) {
  if (c.inherited()) throw_inherited(what);
  if (!c.loop_.submit(n))
    throw runner_closed_error(std::string(what) +
                              ": the runner is closed or closing; create a new runner (the "
                              "global one is recreated by the next palitra::run)");
}
} // namespace

void check_not_loop_thread(const wait_ref& w, const char* what) {
  if (current_runner_id() == w.runner_id) // L3 (runner_core.hpp): ids, never addresses
    throw reentrancy_error(std::string(what) +
                           ": called on the runner's own loop thread, which would deadlock; "
                           "co_await the task instead (or use another runner)");
}

void check_blocking_wait(const wait_ref& w, const char* what) {
  check_not_loop_thread(w, what);
  if (inherited(w)) throw_inherited(what);
}

void call_submit(runner_core& c, call_record_storage& s, const char* what) {
  call_record& op = call_record::of(s);
  op.stamp();
  submit_checked(c, op, what);
}

void node_submit(runner_core& c, queue_node& n, const char* what) { submit_checked(c, n, what); }

void call_wait(const wait_ref& w, call_record_storage& s, bool from_submit) noexcept {
  call_record& op = call_record::of(s);
  if (from_submit) {
    // A blocking call: measured from its submit stamp, no clock read here.
    await_slot(*w.hints, op, op.submitted_at_, op.cpu_);
  } else {
    await_slot(*w.hints, op, std::chrono::steady_clock::now(), current_cpu_tag());
  }
}

bool call_wait_until(const wait_ref& w, call_record_storage& s,
                     std::chrono::steady_clock::time_point deadline) noexcept {
  return call_record::of(s).slot_.wait_until(deadline, caller_spin(*w.hints));
}

bool call_done(const call_record_storage& s) noexcept { return call_record::of(s).slot_.is_done(); }

void call_cancel(runner_core& c, call_record_storage& s) noexcept {
  call_record& op = call_record::of(s);
  op.chain_.request_async(); // this_task::cancelled() turns true at once
  std::uint32_t x = call_record::xc_idle;
  // relaxed: the CAS only decides who owns cancel_node_ (its modification
  // order against the loop's xc_idle -> xc_closed is all that matters); it
  // publishes nothing -- the node reaches the loop through its push (Q1,
  // release / acquire pop). Failure (queued: someone else cancels;
  // closed/popped: it ended or is ending) touches nothing.
  if (!op.xcancel_.compare_exchange_strong(x, call_record::xc_queued, std::memory_order_relaxed,
                                           std::memory_order_relaxed))
    return;
  c.loop_.submit_always(op.cancel_node_); // G1': the call keeps the loop alive (C2)
}

void call_detach_on_loop(runner_core& c, call_record_storage& s) noexcept {
  c.loop_.detach(call_record::of(s));
}

stored_kind call_end(const call_record_storage& s, const char* what) {
  const call_record& op = call_record::of(s);
  if (op.outcome_ == call_outcome::cancelled || op.outcome_ == call_outcome::rejected)
    throw_cancelled_end(op, what);
  return op.stored_;
}

stored_kind call_stored(const call_record_storage& s) noexcept { return call_record::of(s).stored_; }

std::coroutine_handle<> call_frame(const call_record_storage& s) noexcept {
  return call_record::of(s).frame_;
}

// ---- cancel_token ---------------------------------------------------------------
//
// The call a token names is freed by its future (get() or the destructor),
// on the owner's thread, while a token may cancel from any other. The link
// is the meeting point: a token uses the call only while holding the link's
// mutex and seeing op != nullptr; the future clears op under the same mutex
// before it frees the call (unlink_token). call_cancel itself is safe while
// the call is alive: it touches the runner only after winning
// xc_idle -> xc_queued, which keeps the call (and so the runner's loop)
// alive until the cancel node is popped (C2).
struct token_link {
  std::mutex m;
  call_record_storage* op; // guarded by m; nullptr once the future let go
  runner_core* core;       // valid while op is (see above)
  wait_ref w;
};

std::shared_ptr<token_link> make_token_link(runner_core& c, call_record_storage& op,
                                            const wait_ref& w) {
  auto l = std::make_shared<token_link>();
  l->op = &op;
  l->core = &c;
  l->w = w;
  return l;
}

void unlink_token(token_link& l) noexcept {
  std::lock_guard<std::mutex> g(l.m);
  l.op = nullptr;
}

} // namespace palitra::detail

namespace palitra {

void cancel_token::cancel() const noexcept {
  if (!link_) return;
  detail::token_link& l = *link_;
  std::lock_guard<std::mutex> g(l.m);
  if (l.op == nullptr || detail::call_done(*l.op) || detail::inherited(l.w)) return;
  detail::call_cancel(*l.core, *l.op);
}

} // namespace palitra
