// palitra — the call ABI (include/palitra/detail/call.hpp): what the typed
// templates of runner and future call, with the record's layout and the
// protocols kept here, in core/.
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include <palitra/config.hpp>
#include <palitra/error.hpp>
#include <palitra/future.hpp>

#include "runtime/call.hpp"
#include "runtime/loop.hpp"
#include "runtime/runner_core.hpp"

namespace palitra::detail {

/// The id of the runner whose loop runs on this thread, 0 elsewhere (runner.cpp).
std::uint64_t current_runner_id() noexcept;

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

void call_release(call_record_storage& s) noexcept {
  call_record& op = call_record::of(s);
  // parked_ is live only in a published blocking call (C3); a rejected
  // submit never reached the loop and still owns its frame instead.
  if (op.mode_ == call_mode::blocking && op.state() == call_state::published &&
      op.parked_.p != nullptr)
    frame_free(std::exchange(op.parked_.p, nullptr), op.parked_.size);
}

// ---- the loop side of a call (loop thread; protocol: call.hpp) -------------------

call_record::call_record(std::coroutine_handle<> frame, promise_base& p, call_mode mode,
                         finish_fn finish) noexcept
    : frame_(frame), promise_(&p), mode_(mode), finish_(finish) {
  dispatch = &loop::dispatch_root;
  cancel_node_.dispatch = &loop::dispatch_cancel;
  cancel_node_.op = this;
}

std::coroutine_handle<> call_record::on_task_done() noexcept {
  // Inside the root frame's final_suspend: only loop-local bookkeeping here;
  // the publish waits until resume() has returned to the loop.
  current_loop()->root_ended(*this);
  return std::noop_coroutine();
}

void loop::dispatch_root(queue_node* n, loop& l) noexcept {
  l.accept(*static_cast<call_record*>(n));
}

void loop::accept(call_record& op) noexcept {
  bump(submitted_);
  start_latency_.record(drain_time_ - op.submitted_at_);
  if (op.mode_ == call_mode::blocking && op.cpu_ != 0)
    ++(op.cpu_ == cpu_ ? local_waiters_ : remote_waiters_); // cross-CPU spin
  bump(in_flight_);
  // Registry first: even a rejected op stays "in flight" until published.
  op.reg_prev_ = nullptr;
  op.reg_next_ = registry_;
  if (registry_ != nullptr) registry_->reg_prev_ = &op;
  registry_ = &op;
  if (stopping_) {
    // Accepted by G1 while running, popped after S1: it never starts (I3).
    op.reason_ = end_reason::close;
    op.outcome_ = call_outcome::rejected;
    op.set_state(call_state::ended); // queued -> ended
    publish(op);
    return;
  }
  op.promise_->waiter_ = &op;
  op.promise_->chain_ = &op.chain_;
  op.set_state(call_state::running); // queued -> running
  op.start_.handle = op.frame_;
  op.start_.chain = &op.chain_;
  schedule(op.start_);
  if (op.has_deadline_) {
    op.chain_.set_deadline(op.deadline_);
    op.timer_.deadline = op.deadline_;
    op.timer_.fire = &on_root_timeout;
    op.timer_.ctx = &op;
    try {
      timers_.push(op.timer_);
    } catch (...) {
      // No memory for the timer: the deadline cannot be honoured, so the
      // call is cancelled at once (it still starts, as with a zero timeout).
      op.reason_ = end_reason::timeout;
      op.chain_.deliver();
    }
  }
}

void loop::on_root_timeout(void* ctx) noexcept {
  auto* op = static_cast<call_record*>(ctx);
  current_loop()->cancel_op(*op, end_reason::timeout);
}

void loop::cancel_op(call_record& op, end_reason why) noexcept {
  if (op.state() != call_state::running) return;
  if (op.reason_ == end_reason::none) op.reason_ = why; // the first reason wins
  op.chain_.deliver();
}

void loop::dispatch_cancel(queue_node* n, loop& l) noexcept {
  call_record& op = *static_cast<call_record::cancel_request*>(n)->op;
  // relaxed: only the loop reads xcancel_ after xc_queued (call.hpp).
  op.xcancel_.store(call_record::xc_popped, std::memory_order_relaxed);
  if (op.state() == call_state::awaiting_cancel_pop) {
    // It ended while this node was queued (call.hpp handshake, C2).
    --l.awaiting_cancel_;
    l.publish(op);
    return;
  }
  l.cancel_op(op, end_reason::cancel);
}

void loop::detach(call_record& op) noexcept {
  // On the loop thread; the future is gone, so nobody waits on the slot.
  op.mode_ = call_mode::detached;
  op.chain_.request_async();
  if (op.state() == call_state::running) cancel_op(op, end_reason::cancel);
  else if (op.reason_ == end_reason::none)
    op.reason_ = end_reason::cancel;
}

void loop::root_ended(call_record& op) noexcept {
  timers_.erase(op.timer_);
  const promise_base& p = *op.promise_;
  if (!p.failed()) {
    op.outcome_ = call_outcome::value;
  } else if ((op.reason_ != end_reason::none || op.chain_.cancelled()) &&
             is_cancellation(p.exception())) {
    // A future::cancel() is visible to the task (request_async) before its
    // cancel node reaches us, so the task may end by it with no reason set
    // yet: that is still our cancellation, not the task's own failure.
    if (op.reason_ == end_reason::none) op.reason_ = end_reason::cancel;
    op.outcome_ = call_outcome::cancelled;
  } else {
    op.outcome_ = call_outcome::failed;
  }
  op.set_state(call_state::ended); // running -> ended
  op.finished_next_ = nullptr;
  if (finished_tail_ != nullptr)
    finished_tail_->finished_next_ = &op;
  else
    finished_head_ = &op;
  finished_tail_ = &op;
}

void loop::publish_finished() noexcept {
  while (call_record* op = finished_head_) {
    finished_head_ = op->finished_next_;
    if (finished_head_ == nullptr) finished_tail_ = nullptr;
    publish(*op);
  }
}

void loop::publish(call_record& op) noexcept {
  if (op.mode_ == call_mode::future) {
    std::uint32_t x = call_record::xc_idle;
    // relaxed: decides by modification order alone, publishes nothing. On
    // success no cancel node will come (a canceller reads xc_closed and
    // touches nothing); on failure we read xc_queued (its node is still
    // queued: wait for its pop, C2; the pop orders the node's contents) or
    // xc_popped (our own store: go on).
    if (!op.xcancel_.compare_exchange_strong(x, call_record::xc_closed,
                                             std::memory_order_relaxed,
                                             std::memory_order_relaxed) &&
        x == call_record::xc_queued) {
      op.set_state(call_state::awaiting_cancel_pop); // ended -> awaiting_cancel_pop
      ++awaiting_cancel_;
      return;
    }
  }
  const bool loop_owned = op.mode_ == call_mode::spawned || op.mode_ == call_mode::detached;
  // The frame dies here, on the loop, before its caller is released (C3):
  // no code of the call (its locals' and parameters' destructors included)
  // can run after close() returned. First, because a result whose move
  // constructor throws turns the call into a failed one.
  if (!loop_owned) {
    if (op.outcome_ == call_outcome::value || op.outcome_ == call_outcome::failed) {
      op.stored_ = op.finish_(op.storage(), finish_step::harvest);
      if (op.stored_ == stored_kind::error) op.outcome_ = call_outcome::failed;
    }
    if (op.mode_ == call_mode::blocking) {
      // The destructors run here; the block goes back to its caller (C3).
      ::new (static_cast<void*>(&op.parked_)) deferred_block{}; // timer_ is dead
      destroy_frame_parked(std::exchange(op.frame_, {}), op.parked_);
    } else {
      std::exchange(op.frame_, {}).destroy();
    }
  }
  // Leave the registry and count the call in exactly one bucket (C1).
  if (op.reg_prev_ != nullptr)
    op.reg_prev_->reg_next_ = op.reg_next_;
  else
    registry_ = op.reg_next_;
  if (op.reg_next_ != nullptr) op.reg_next_->reg_prev_ = op.reg_prev_;
  switch (op.outcome_) {
  case call_outcome::value: bump(completed_); break;
  case call_outcome::failed: bump(failed_); break;
  case call_outcome::cancelled:
  case call_outcome::rejected: bump(cancelled_); break;
  case call_outcome::none: PALITRA_ASSERT(false, "publishing a call that has not ended");
  }
  bump(in_flight_, -1);

  if (loop_owned) {
    const bool report = op.mode_ == call_mode::spawned && op.outcome_ == call_outcome::failed;
    if (report) report_unhandled(op.promise_->exception());
    op.finish_(op.storage(), finish_step::reclaim); // frees the frame and the call, here
    return;
  }
  op.set_state(call_state::published); // -> published (terminal)
  if (op.slot_.publish()) bump(caller_wakes_); // P1: the last access to op
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
