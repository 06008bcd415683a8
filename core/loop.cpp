// palitra — the event loop (protocol blocks: loop.hpp, call.hpp,
// completion_slot.hpp, cancel.hpp).
#include <sched.h>

#include <cstdio>
#include <cstdlib>

#include <unistd.h>

#include <palitra/config.hpp>
#include <palitra/error.hpp>

#include "loop.hpp"
#include "runner_core.hpp"

namespace palitra::detail {
namespace {

thread_local loop* tl_loop = nullptr;
thread_local std::uint64_t tl_spin_hits = 0; // cross-CPU spin: waits it ended
thread_local cancel_state* tl_chain = nullptr;

using clock = std::chrono::steady_clock;

} // namespace

// ---- loop_hooks.hpp -------------------------------------------------------

std::uint32_t current_cpu_tag() noexcept {
#if defined(__linux__)
  const int c = sched_getcpu(); // glibc >= 2.35 reads the rseq area: no syscall
  return c < 0 ? 0 : static_cast<std::uint32_t>(c) + 1;
#else
  return 0; // unknown: the cross-CPU spin stays off
#endif
}

loop* current_loop() noexcept { return tl_loop; }
cancel_state* current_chain() noexcept { return tl_chain; }
void set_current_chain(cancel_state* c) noexcept { tl_chain = c; }
void schedule(loop& l, ready_item& item) noexcept { l.schedule(item); }
void add_timer(loop& l, timer_node& t) { l.add_timer(t); }
void remove_timer(loop& l, timer_node& t) noexcept { l.remove_timer(t); }

bool loop_stopping() noexcept { return tl_loop != nullptr && !tl_loop->accepting(); }

loop& require_loop(const char* what) {
  if (tl_loop == nullptr)
    throw error(std::string(what) +
                ": not on a palitra loop thread; co_await it inside a task run by a runner");
  return *tl_loop;
}

void report_unhandled(loop& l, std::exception_ptr e) noexcept { l.report_unhandled(e); }

// ---- call_record ------------------------------------------------------------

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
  tl_loop->root_ended(*this);
  return std::noop_coroutine();
}

// ---- construction ----------------------------------------------------------

loop::loop(const runner_options& o)
    : hints_(std::max<std::int64_t>(0, o.caller_spin.count())),
      loop_budget_(std::max<std::int64_t>(0, o.loop_spin.count())), loop_spin_(o.loop_spin),
      stall_threshold_(o.stall_threshold), close_warning_(o.close_warning),
      on_unhandled_(o.on_unhandled_error), on_stall_(o.on_stall),
      on_slow_close_(o.on_slow_close) {}

// ---- adaptive spin -----------------------------------------------------------
//
// Both waiting phases (a blocking caller's yield phase, the idle loop's) pay
// off only when the other side answers within them; otherwise they burn CPU
// and still end in a sleep. Each budget therefore adapts between 0 and its
// runner_options ceiling, asymmetrically (glibc's adaptive mutex and TCP's
// window use the same shape):
//   hit  -- the wait ended within the ceiling (during the phase, or asleep
//           but sooner than a full-ceiling phase would have lasted): the
//           budget goes back to the ceiling at once, because one avoided
//           sleep/wake pair is worth more than the yields it costs.
//   miss -- the wait outlasted the ceiling: the budget halves; below
//           min_budget it is 0 and the side sleeps at once.
// Under load every wait hits, so the budgets stay at the ceiling and nothing
// changes; with sparse calls or long calls the loop (resp. the caller) stops
// yielding after a few misses (bench: sparse CPU per call). A waiter that
// sleeps at once still measures its wait, so the first short wait restores
// the ceiling. The budgets are heuristics: racing updates from several
// callers may lose one another, which costs a step of adaptation, never
// correctness (the slot and the sleep protocols do not read them).

namespace {
constexpr std::int64_t min_budget_ns = 1000; // below this a phase is not worth a yield
constexpr int queued_cap_factor = 20;         // queued calls: see loop::await_slot
using wait_end = completion_slot::wait_end;

std::int64_t adapt(std::int64_t budget, std::int64_t ceiling, bool hit) noexcept {
  if (hit) return ceiling;
  const std::int64_t half = budget / 2;
  return half < min_budget_ns ? 0 : half;
}
} // namespace

namespace {
void note_caller_wait(wait_hints& h, bool hit) noexcept {
  // relaxed: a heuristic; the store happens only on a change, so a loaded
  // runner whose calls all hit never writes this line.
  const std::int64_t b = h.caller_budget.load(std::memory_order_relaxed);
  const std::int64_t n = adapt(b, h.caller_ceiling.load(std::memory_order_relaxed), hit);
  if (n != b) h.caller_budget.store(n, std::memory_order_relaxed);
}

// ---- wait hints ----------------------------------------------------------------
//
// A caller released by close() may still be in await_slot -- reading the
// presence in its spin predicate, adapting the budget after its A1 -- when
// another thread destroys the runner (close() then ~runner is the natural
// order, as notify then ~condition_variable is for std::condition_variable).
// So nothing a waiter reads may live in the runner: each loop leases a block
// from this pool, which is type-stable (blocks are never freed, only reused).
//   block states: free (taken == false) -> leased (CAS, runner construction)
//                 -> free (release, at the end of runner_core::close(), after
//                 the join, or when the loop is destroyed unclosed).
//   H1 A block is leased by at most one runner at a time (the CAS).
//   H2 The pool is a push-only list of chunks (no pop, so no ABA); it grows
//      by one chunk when no block is free, so every runner has a block of
//      its own and its callers see its own ceiling and presence.
//   H3 A late waiter that reads a block after its release reads a free or a
//      later runner's block: its budget or presence is wrong for one wait,
//      which costs at most one budget of yielding or spinning, never
//      correctness (the slot does not read them).
constexpr std::size_t chunk_blocks = 16;
struct hint_chunk {
  wait_hints blocks[chunk_blocks];
  hint_chunk* next = nullptr; // immutable once published
};
// acquire/release: a chunk is published fully built (pairs with the loads
// in acquire_wait_hints).
std::atomic<hint_chunk*> g_chunks{nullptr};
std::atomic<std::size_t> g_pool_size{0};

wait_hints* try_lease(hint_chunk* head) noexcept {
  for (hint_chunk* c = head; c != nullptr; c = c->next) {
    for (wait_hints& h : c->blocks) {
      bool expected = false;
      // acquire: pairs with release_wait_hints' release store, so the last
      // owner's writes to the block happen before ours (H1).
      if (!h.taken.load(std::memory_order_relaxed) &&
          h.taken.compare_exchange_strong(expected, true, std::memory_order_acquire,
                                          std::memory_order_relaxed))
        return &h;
    }
  }
  return nullptr;
}
} // namespace

wait_hints& acquire_wait_hints(std::int64_t ceiling_ns) {
  // acquire: see g_chunks.
  wait_hints* h = try_lease(g_chunks.load(std::memory_order_acquire));
  if (h == nullptr) {
    auto* fresh = new hint_chunk; // never freed (H2, H3)
    h = &fresh->blocks[0];
    h->taken.store(true, std::memory_order_relaxed); // not yet visible to anyone
    hint_chunk* head = g_chunks.load(std::memory_order_relaxed);
    do {
      fresh->next = head;
      // release: publishes the chunk's initialised blocks (g_chunks).
    } while (!g_chunks.compare_exchange_weak(head, fresh, std::memory_order_release,
                                             std::memory_order_relaxed));
    g_pool_size.fetch_add(chunk_blocks, std::memory_order_relaxed); // a statistic
  }
  // relaxed: hints (H3).
  h->caller_ceiling.store(ceiling_ns, std::memory_order_relaxed);
  h->caller_budget.store(ceiling_ns, std::memory_order_relaxed);
  h->presence.store(0, std::memory_order_relaxed);
  return *h;
}

void release_wait_hints(wait_hints& h) noexcept {
  h.presence.store(0, std::memory_order_relaxed); // late waiters stop spinning
  // release: pairs with the next lease's CAS (H1).
  h.taken.store(false, std::memory_order_release);
}

std::size_t wait_hints_pool_size() noexcept {
  return g_pool_size.load(std::memory_order_relaxed);
}

void loop::close_handles() noexcept {
  reactor_.close();
  // relaxed: a counter for stats(); the join ordered the loop's last writes.
  final_caller_budget_.store(hints_.get().caller_budget.load(std::memory_order_relaxed),
                             std::memory_order_relaxed);
  hints_.release();
  timers_.release_memory();
}

loop::~loop() = default;

// ---- cross-CPU spin ------------------------------------------------------------
//
// A blocking caller can wait in three ways: spin on its slot with the CPU's
// pause hint (no syscall), yield its CPU (sched_yield), or sleep on the slot
// (futex). Which is cheapest depends on where the loop runs, and on these
// guests a syscall alone costs ~1.1-1.3 µs (bench/README.md):
//   - loop on the caller's CPU: only giving the CPU away lets the loop run;
//     a pause spin would hold the CPU the loop needs (research: a 20 µs
//     pause spin cost 46 µs per call). Yield, then sleep.
//   - loop running on another CPU: the result comes without this CPU. A
//     pause spin sees it within ~0.1 µs of the publish, where a yield costs
//     a syscall and, with other threads runnable here, a context switch.
// So the loop advertises where it is (wait_hints::presence), and a caller spins only
// while the loop is running on another CPU:
//   presence = the loop's CPU tag (current_cpu_tag(), CPU + 1) while it
//     runs: set by mark_running() at the start of every pass (a store only
//     when it changed); 0 while it yields or sleeps (mark_away(), just
//     before sched_yield or the reactor wait, until the next pass).
//   caller: after submitting, if presence is neither 0 nor its own CPU's
//     tag, spin (completion_slot::spin_phase) while that stays true and the
//     caller's budget (since the submit) lasts; then the yield phase and
//     sleep as before. A caller that sees the loop leave (0) stops at once.
// The loop does the same on its side: its idle phase polls the queue with
// pause instead of sched_yield when every blocking call of its last batch
// came from another CPU (no waiter needs the loop's CPU), and yields
// otherwise.
// The presence is a hint: it publishes nothing (relaxed), a stale value costs
// at most one budget of spinning (the loop migrated or was preempted while
// marked running), and neither the slot nor the sleep protocols read it.
// On one CPU (taskset -c 0) every caller sees the loop's own tag or 0 and
// never spins; on a many-core server where the loop has a core, no call
// makes a syscall on either side.

std::uint64_t spin_hits_this_thread() noexcept { return tl_spin_hits; }

void loop::mark_running() noexcept {
  const std::uint32_t c = current_cpu_tag();
  cpu_ = c;
  if (advertised_ == c) return;
  advertised_ = c;
  // relaxed: see above; the loop is its block's only presence writer.
  hints_.get().presence.store(c, std::memory_order_relaxed);
}

void loop::mark_away() noexcept {
  if (advertised_ == 0) return; // a store only on a change: spinners poll this line
  advertised_ = 0;
  hints_.get().presence.store(0, std::memory_order_relaxed); // relaxed: see above
}

void await_slot(wait_hints& h, call_record& op, clock::time_point since, std::uint32_t me) noexcept {
  completion_slot& s = op.slot_;
  if (s.is_done()) return note_caller_wait(h, true);
  // relaxed: hints (see "wait hints"); the slot's acquire load is what
  // makes a result visible.
  auto presence = [&h] { return h.presence.load(std::memory_order_relaxed); };
  const std::chrono::nanoseconds budget(h.caller_budget.load(std::memory_order_relaxed));
  const std::chrono::nanoseconds ceiling(h.caller_ceiling.load(std::memory_order_relaxed));
  if (budget > budget.zero()) {
    const std::uint32_t p = presence();
    if (p != 0 && p != me) {
      const clock::time_point until = since + budget;
      unsigned checks = 0;
      // The clock is read every 8th check (~1.3 µs of pauses), not each.
      const bool done = s.spin_phase([&] {
        const std::uint32_t q = presence();
        if (q == 0 || q == me) return false;
        return (++checks & 7u) != 0 || clock::now() < until;
      });
      if (done) {
        ++tl_spin_hits;
        return note_caller_wait(h, true);
      }
    }
  }
  // Queued calls: the budget bounds what a caller pays waiting for a call
  // that runs long, but a call still queued behind other callers' will be
  // served at the loop's next pass, and sleeping would only add a futex
  // wake to that pass. With many callers on one CPU one round of yields
  // outlasts the budget (64 callers x ~3 µs per switch here), and 10 % of
  // the calls at 64 callers slept. So a caller whose op the loop has not
  // popped yet keeps yielding past the budget, up to queued_cap_factor
  // budgets (a loop stuck in a long resume must not keep it forever).
  wait_end end;
  if (budget <= budget.zero()) {
    end = s.wait_yielding(nullptr);
  } else {
    const clock::time_point until = since + budget;
    // Saturated: runner_options::caller_spin may be near the int64 limit.
    const auto cap_span = ceiling > std::chrono::nanoseconds::max() / queued_cap_factor
                              ? std::chrono::nanoseconds(std::chrono::hours(24 * 365))
                              : queued_cap_factor * ceiling;
    const clock::time_point cap = since + cap_span;
    end = s.wait_yielding([&] {
      const auto now = clock::now();
      // a relaxed read of state_: a hint (call.hpp C4).
      return now < until || (!op.accepted() && now < cap);
    });
  }
  // Only a wait that slept reads the clock: it has just paid for a futex
  // wake, so one more clock read is noise. A yield-phase finish is a hit.
  note_caller_wait(h, end != wait_end::slept || clock::now() - since <= ceiling);
}

runner_stats loop::stats() const noexcept {
  runner_stats s;
  // relaxed: counters (see bump); a snapshot balances when the loop is quiet.
  s.submitted = submitted_.load(std::memory_order_relaxed);
  s.completed = completed_.load(std::memory_order_relaxed);
  s.failed = failed_.load(std::memory_order_relaxed);
  s.cancelled = cancelled_.load(std::memory_order_relaxed);
  s.in_flight = in_flight_.load(std::memory_order_relaxed);
  s.loop_wakeups = sub_.wakeups();
  s.loop_iterations = iterations_.load(std::memory_order_relaxed);
  s.caller_wakes = caller_wakes_.load(std::memory_order_relaxed);
  s.queue_depth = queue_depth_.load(std::memory_order_relaxed);
  s.max_queue_depth = max_queue_depth_.load(std::memory_order_relaxed);
  s.start_latency_p50 = start_latency_.percentile(0.50);
  s.start_latency_p99 = start_latency_.percentile(0.99);
  s.start_latency_max = start_latency_.max();
  s.stalls = stalls_.load(std::memory_order_relaxed);
  const std::int64_t final_budget = final_caller_budget_.load(std::memory_order_relaxed);
  s.caller_spin_budget = std::chrono::nanoseconds(
      final_budget >= 0 ? final_budget
                        : hints_.get().caller_budget.load(std::memory_order_relaxed));
  s.loop_spin_budget = std::chrono::nanoseconds(loop_budget_.load(std::memory_order_relaxed));
  return s;
}

std::vector<call_info> loop::snapshot_calls() const {
  std::vector<call_info> out;
  const auto now = clock::now();
  for (const call_record* op = registry_; op != nullptr; op = op->reg_next_) {
    call_info c;
    c.kind = op->mode_ == call_mode::blocking ? call_info::call_kind::blocking
             : op->mode_ == call_mode::future || op->mode_ == call_mode::detached
                 ? call_info::call_kind::future
                                              : call_info::call_kind::spawned;
    c.caller = op->caller_;
    c.age = std::chrono::duration_cast<std::chrono::nanoseconds>(now - op->submitted_at_);
    c.cancelling = op->reason_ != end_reason::none || op->chain_.cancelled();
    out.push_back(c);
  }
  return out;
}

// ---- loop thread -----------------------------------------------------------

void loop::schedule(ready_item& item) noexcept {
  item.next = nullptr;
  if (ready_tail_ != nullptr)
    ready_tail_->next = &item;
  else
    ready_head_ = &item;
  ready_tail_ = &item;
}

void loop::report_unhandled(std::exception_ptr e) noexcept {
  try {
    if (on_unhandled_) {
      on_unhandled_(e);
      return;
    }
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      std::fprintf(stderr, "palitra: unhandled exception in a spawned task or posted callable: %s\n",
                   x.what());
    } catch (...) {
      std::fprintf(stderr, "palitra: unhandled non-std exception in a spawned task or posted callable\n");
    }
  } catch (...) {
    // The handler itself threw: nothing sensible is left to report to.
  }
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
  tl_loop->cancel_op(*op, end_reason::timeout);
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
    std::exchange(op.frame_, {}).destroy();
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

bool loop::drain_queue() noexcept {
  queue_node* n = sub_.take_all();
  if (n == nullptr) return false;
  drain_time_ = clock::now(); // one clock read per batch
  local_waiters_ = remote_waiters_ = 0; // counted by accept()
  std::uint64_t depth = 0;
  while (n != nullptr) {
    queue_node* next = n->next; // read first: dispatch may free or publish n
    n->dispatch(n, *this);
    n = next;
    ++depth;
  }
  queue_depth_.store(depth, std::memory_order_relaxed); // counters: see bump
  if (depth > max_queue_depth_.load(std::memory_order_relaxed))
    max_queue_depth_.store(depth, std::memory_order_relaxed);
  publish_finished();
  return true;
}

void loop::run_ready() noexcept {
  // Only what is ready now: work scheduled while this pass runs waits for
  // the next pass, so submissions and timers are never starved.
  ready_item* const last = ready_tail_;
  if (last == nullptr) return;
  for (;;) {
    ready_item* it = ready_head_;
    ready_head_ = it->next;
    if (ready_head_ == nullptr) ready_tail_ = nullptr;
    const bool was_last = it == last;
    resume(*it); // may reuse `it` (a yield re-schedules the same item)
    publish_finished();
    if (was_last) break;
  }
}

void loop::resume(ready_item& it) noexcept {
  tl_chain = it.chain;
  if (stall_threshold_.count() <= 0) [[likely]] {
    it.handle.resume();
  } else {
    const auto t0 = clock::now();
    it.handle.resume();
    const auto d = clock::now() - t0;
    if (d > stall_threshold_) report_stall(std::chrono::duration_cast<std::chrono::nanoseconds>(d));
  }
  tl_chain = nullptr;
  if (fork_generation() != born_) [[unlikely]] leave_forked_child();
}

void loop::leave_forked_child() noexcept {
  // A coroutine called fork() and the child came back here instead of
  // calling exec or _exit. This thread is the child's only one, and every
  // loop structure is a copy of the parent's: the queue and registry name
  // callers that do not exist here, and the epoll instance and wake fd are
  // shared with the parent, so a read of the wake fd could swallow the
  // parent's wake-up. Touch none of it: leave at once, without exit
  // handlers (they would close the parent's global runner state copy).
  static constexpr char msg[] =
      "palitra: fork() was called on a loop thread and the child returned to the "
      "inherited loop; the child exits now (call exec or _exit in the child)\n";
  [[maybe_unused]] const auto w = ::write(2, msg, sizeof msg - 1);
  ::_exit(EXIT_FAILURE);
}

void loop::report_stall(std::chrono::nanoseconds d) noexcept {
  bump(stalls_);
  try {
    if (on_stall_) {
      on_stall_(d);
      return;
    }
    std::fprintf(stderr,
                 "palitra: a coroutine kept the loop busy for %.3f ms without suspending "
                 "(stall_threshold %.3f ms); move blocking work to another thread\n",
                 static_cast<double>(d.count()) / 1e6,
                 static_cast<double>(stall_threshold_.count()) / 1e6);
  } catch (...) {
    // The handler threw: nothing sensible is left to report to.
  }
}

void loop::fire_timers() noexcept {
  if (timers_.empty()) return;
  const auto now = clock::now();
  while (timer_node* t = timers_.top()) {
    if (t->deadline > now) break;
    timers_.pop();
    t->fire(t->ctx);
  }
  publish_finished();
}

void loop::idle() noexcept {
  auto next_deadline = [this]() -> std::int64_t {
    timer_node* t = timers_.top();
    if (t == nullptr) return -1;
    const auto d = t->deadline - clock::now();
    return d.count() <= 0 ? 0 : std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  };
  auto work_waiting = [this] {
    return !sub_.queue_empty_hint() || (!stopping_ && !accepting());
  };
  // relaxed: the loop is this budget's only writer.
  const std::int64_t budget = loop_budget_.load(std::memory_order_relaxed);
  auto note = [&](bool hit) {
    const std::int64_t n = adapt(budget, loop_spin_.count(), hit);
    if (n != budget) loop_budget_.store(n, std::memory_order_relaxed); // see above
  };
  // Hand-over phase (adaptive spin, above): yield the CPU to callers for a
  // bounded time; a submission found here costs nobody a syscall. The
  // clock is read only after a yield that found nothing, so a round trip
  // whose next submission is there when the first yield returns reads none.
  // When no waiter shares our CPU, poll with pause instead (cross-CPU spin).
  clock::time_point idle_since{};
  if (budget > 0) {
    const bool poll = local_waiters_ == 0 && remote_waiters_ > 0;
    clock::time_point until{};
    for (;;) {
      if (work_waiting()) return note(true);
      if (timer_node* t = timers_.top(); t != nullptr && t->deadline <= clock::now()) return;
      // I/O completes during the hand-over too, not up to loop_spin late.
      if (poll_pass(reactor_) > 0) return;
      if (poll) {
        for (int i = 0; i < 16 && !work_waiting(); ++i) os_sync::pause(); // ~0.3 µs
      } else {
        mark_away(); // run() marks it running again at the next pass
        sched_yield();
      }
      if (work_waiting()) return note(true);
      const auto now = clock::now();
      if (idle_since == clock::time_point{}) {
        idle_since = now;
        until = now + std::chrono::nanoseconds(budget);
      } else if (now >= until) {
        break;
      }
    }
  }
  if (idle_since == clock::time_point{}) idle_since = clock::now();
  mark_away(); // before W1: a caller that sees 0 stops spinning
  if (!sub_.arm_for_sleep(stopping_)) return note(true); // W1
#if PALITRA_SUBMISSION_QUEUE_MOODYCAMEL
  // Benchmark ablation only (mc_queue.hpp I2): W1 rests on size_approx(),
  // so never sleep longer than 1 ms on it.
  constexpr std::int64_t max_sleep_ns = 1'000'000;
  const std::int64_t d = next_deadline();
  reactor_.poll(d < 0 || d > max_sleep_ns ? max_sleep_ns : d);
#else
  reactor_.poll(next_deadline()); // dispatches I/O completions too
#endif
  sub_.disarm(); // W3
  // Woken by a submission (not a timer, a close or a spurious wake): would a
  // full-ceiling phase have caught it?
  if (!sub_.queue_empty_hint()) note(clock::now() - idle_since <= loop_spin_);
}

void loop::begin_stop() noexcept {
  stopping_ = true;
  for (call_record* op = registry_; op != nullptr; op = op->reg_next_)
    cancel_op(*op, end_reason::close); // running calls only
  if (close_warning_.count() > 0 && registry_ != nullptr) {
    // A timer, so the report comes even while the loop sleeps (a task that
    // swallowed cancelled_error and waits on something that never comes).
    slow_close_timer_.deadline = clock::now() + close_warning_;
    slow_close_timer_.fire = &on_slow_close;
    slow_close_timer_.ctx = this;
    try {
      timers_.push(slow_close_timer_);
    } catch (...) {
      // No memory for the timer: the close goes on, unreported.
    }
  }
}

void loop::on_slow_close(void* ctx) noexcept {
  auto& self = *static_cast<loop*>(ctx);
  if (self.registry_ == nullptr) return;
  try {
    const std::vector<call_info> calls = self.snapshot_calls();
    if (self.on_slow_close_) {
      self.on_slow_close_(calls);
      return;
    }
    std::fprintf(stderr,
                 "palitra: close() has waited %.1f s for %zu call(s) to unwind; a task that "
                 "catches cancelled_error without rethrowing keeps it waiting:\n",
                 static_cast<double>(self.close_warning_.count()) / 1e9, calls.size());
    for (const call_info& c : calls) {
      const char* kind = c.kind == call_info::call_kind::blocking ? "blocking call"
                         : c.kind == call_info::call_kind::future ? "submitted task"
                                                                  : "spawned task";
      std::fprintf(stderr, "palitra:   %s, %.3f s old\n", kind,
                   static_cast<double>(c.age.count()) / 1e9);
    }
  } catch (...) {
    // Out of memory or a throwing handler: nothing sensible is left to report to.
  }
}

bool loop::try_finish_stop() noexcept {
  if (!sub_.try_finish_stop()) return false; // S2
  // The final drain (I1): every accepted submission is here or already
  // handled; a future may still push its cancel node (G1'), and a call
  // rejected now may have to wait for that node before it can be published.
  for (;;) {
    drain_queue();
    run_ready();
    if (awaiting_cancel_ == 0 && sub_.producers() == 0 && sub_.queue_empty() &&
        ready_head_ == nullptr)
      break;
    mark_away();
    sched_yield();
  }
  return true;
}

void loop::run(std::uint32_t born) noexcept {
  born_ = born;
  // Model: stress/model/palitra.pml, process Loop (TAKE_ALL, REJECT_BATCH,
  // END_CALL, idle W1-W3, S2, final drain).
  tl_loop = this;
  for (;;) {
    bump(iterations_);
    mark_running(); // cross-CPU spin: the CPU may have changed (a preemption)
    if (!stopping_ && !accepting()) begin_stop();
    drain_queue();
    run_ready();
    fire_timers();
    // I/O on every pass, not only when idle, so a ready queue that never
    // empties cannot starve it (review B.7). Gated on pending ops, so a pass
    // under a pure run() load stays syscall-free; with I/O in flight it is
    // one epoll_wait(0) per pass, amortised over the pass's whole batch
    // (run_ready runs everything ready when it began; tokio's
    // event_interval = 61 counts single tasks, a pass here is many).
    poll_pass(reactor_);
    if (stopping_ && registry_ == nullptr && ready_head_ == nullptr) {
      if (try_finish_stop()) break;
      mark_away();
      sched_yield(); // a producer is between G1 and G3: let it finish
      continue;
    }
    if (ready_head_ != nullptr) continue;
    idle();
  }
  timers_.erase(slow_close_timer_); // unfired: every call unwound in time
  PALITRA_ASSERT(timers_.empty(), "a timer outlived every call on a closed loop");
  mark_away();
  tl_loop = nullptr;
}

} // namespace palitra::detail
