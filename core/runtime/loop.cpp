// palitra — the event loop: one pass after another on the runner's thread,
// and the stop sequence. The other protocols it takes part in have their own
// blocks: submission.hpp (gate G0-G3, S1, S2, wake elision W1-W3), call.hpp
// (a call's lifecycle C1-C4), completion_slot.hpp (P1/A1), cancel.hpp,
// wait_hints.hpp, reactor/reactor.hpp; docs/protocols.md lists them all.
//
// A pass (run()): drain the submission queue (accept calls, pop cancel
// nodes), resume what was ready when the pass began, fire due timers, poll
// I/O if any is pending, publish every call that ended; then, if nothing is
// ready, idle (hand-over phase, then W1 and a reactor wait).
//
// ---------------------------------------------------------------------------
// Protocol: the stop sequence (phases named here, derived from grace_,
// stopping_, the registry and the gate rather than stored; every step on the
// loop thread).
//   running   -> grace     a pass sees the gate left running (S1) and
//                          grace_until_ still ahead (close(grace)):
//                          enter_stop() sets grace_ and arms grace_timer_ at
//                          grace_until_. Nothing is cancelled, and calls
//                          popped now (accepted by G1 before S1) still
//                          start: they are in flight too (E6).
//   running   -> stopping  a pass sees the gate left running with no grace
//                          (close(), abandon(), or a grace already over):
//                          begin_stop() sets stopping_, cancels every
//                          running call (end_reason close), and arms the
//                          slow-close report (close_warning). Calls popped
//                          from now on are rejected at accept (call.hpp
//                          queued -> ended), never started.
//   grace     -> stopping  end_grace() (erases grace_timer_, E8), then
//                          begin_stop() as above, at the first of:
//                          grace_timer_ fires; a grace notice is popped and
//                          grace_until_ has passed (a close() during the
//                          grace: E5; an earlier deadline only re-arms the
//                          timer); a pass ends with the registry and the
//                          ready queue empty, no producer inside the gate
//                          and the queue empty (nothing left to wait for,
//                          so an idle close(grace) does not sleep).
//   stopping  -> draining  the registry and the ready queue are empty: every
//                          accepted call was published or freed (C1), and
//                          no to_thread completion is owed (blocking_job.hpp,
//                          B2; the loop sleeps until the worker's push).
//   draining  -> stopped   S2 succeeds (the gate was stopping with no
//                          producer inside). A producer between G1 and G3
//                          makes it fail; the loop yields and goes round.
//   stopped   -> exited    the final drain: drain and run until no producer
//                          is inside (G1' cancel nodes may still arrive),
//                          the queue is empty, no call awaits its cancel
//                          node's pop, no to_thread completion is owed, and
//                          nothing is ready. run() returns;
//                          the thread ends and close() joins it.
// Invariants:
//   E1 after S2 no submission is accepted (G0/G1 see stopped), and the
//      final drain sees every one that was (submission.hpp I1).
//   E2 the loop exits with no call in flight, no timer armed (asserted),
//      and no frame alive: each was destroyed before its P1 (C3). So when
//      close() returns after the join, no code of any call runs (DESIGN.md §4).
//   E3 the wake fd is written only by counted producers (submission.hpp I2),
//      so nothing writes it after exited; close() releases the reactor then.
//   E4 a forked child never runs a pass: resume() leaves at once when the
//      fork generation changed (leave_forked_child).
//   E5 grace_until_ is written by closers only, under request_stop's CASes:
//      the first closer moves it grace_none -> its deadline and then makes
//      S1; a later closer only lowers it (close() lowers it to
//      grace_expired) and then pushes its grace notice through G1''
//      (submission.hpp). S1's release and the notice's push publish it. So
//      the grace in effect is the earliest deadline any closer asked for,
//      and a close() during a grace ends it at the notice's pop.
//   E6 in grace the loop neither cancels nor rejects: the gate refuses new
//      submissions (S1), everything accepted runs on, and each pass checks
//      whether anything is left to wait for. A producer between G1 and G3
//      counts (the loop yields and goes round): its call starts in grace.
//   E7 this_task::cancelled() (cancelling()) needs no step of the loop: it
//      is true once stopping_ is set, or once the gate left running and
//      grace_until_ has passed; so a CPU-bound task sees close() at once,
//      as before, and sees nothing during a grace that is still running.
//   E8 grace_timer_ is armed only in grace; every way out of grace erases
//      it, so E2's "no timer armed" holds at exit.
// Model: stress/model/palitra.pml, process Loop (TAKE_ALL, REJECT_BATCH,
// END_CALL, idle W1-W3, S2, final drain). The grace phase is not modelled:
// it delays begin_stop by passes that run as in running (E6) and changes
// neither S1 nor S2; its one new gate entry, G1'', is G1 with a wider state
// check (submission.hpp), and the model's S2 already waits for any count.
// ---------------------------------------------------------------------------
#include <cstdio>
#include <cstdlib>
#include <type_traits>


#include <palitra/config.hpp>
#include <palitra/error.hpp>

#include "runtime/loop.hpp"
#include "platform/platform.hpp"
#include "runtime/runner_core.hpp"
#include "runtime/spin_policy.hpp"

namespace palitra::detail {
namespace {

thread_local loop* tl_loop = nullptr;
thread_local cancel_state* tl_chain = nullptr;

using clock = std::chrono::steady_clock;

} // namespace

// ---- loop_hooks.hpp -------------------------------------------------------

std::uint32_t current_cpu_tag() noexcept { return platform::cpu_tag(); }

loop* current_loop() noexcept { return tl_loop; }
cancel_state* current_chain() noexcept { return tl_chain; }
void set_current_chain(cancel_state* c) noexcept { tl_chain = c; }
void schedule(loop& l, ready_item& item) noexcept { l.schedule(item); }
void add_timer(loop& l, timer_node& t) { l.add_timer(t); }
void remove_timer(loop& l, timer_node& t) noexcept { l.remove_timer(t); }

bool loop_stopping() noexcept { return tl_loop != nullptr && tl_loop->cancelling(); }

loop& require_loop(const char* what) {
  if (tl_loop == nullptr)
    throw error(std::string(what) +
                ": not on a palitra loop thread; co_await it inside a task run by a runner");
  return *tl_loop;
}

void report_unhandled(loop& l, std::exception_ptr e) noexcept { l.report_unhandled(e); }

// ---- construction ----------------------------------------------------------

loop::loop(const runner_options& o)
    : hints_(std::max<std::int64_t>(0, o.caller_spin.count())),
      loop_budget_(std::max<std::int64_t>(0, o.loop_spin.count())), loop_spin_(o.loop_spin),
      stall_threshold_(o.stall_threshold), close_warning_(o.close_warning),
      on_unhandled_(o.on_unhandled_error), on_stall_(o.on_stall),
      on_slow_close_(o.on_slow_close), pool_(o.blocking_threads, o.name) {
  anchor_ = std::make_shared<loop_anchor>(*this);
}

void loop::add_resident(loop_resident& r) noexcept {
  PALITRA_ASSERT(!r.registered, "loop resident registered twice");
  r.prev = nullptr;
  r.next = residents_;
  if (residents_ != nullptr) residents_->prev = &r;
  residents_ = &r;
  r.registered = true;
}

void loop::remove_resident(loop_resident& r) noexcept {
  if (!r.registered) return;
  (r.prev != nullptr ? r.prev->next : residents_) = r.next;
  if (r.next != nullptr) r.next->prev = r.prev;
  r.prev = r.next = nullptr;
  r.registered = false;
}

void loop_anchor::hand_off(queue_node& node, void (*in_place)(queue_node&) noexcept) noexcept {
  {
    std::lock_guard lk(m_);
    if (!gone_) { // H1
      loop_->submit_always(node);
      return;
    }
  }
  in_place(node); // H2
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

// ---- loop thread -----------------------------------------------------------

void loop::schedule(ready_item& item) noexcept {
  item.next = nullptr;
  if (ready_tail_ != nullptr)
    ready_tail_->next = &item;
  else
    ready_head_ = &item;
  ready_tail_ = &item;
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
  platform::exit_now(
      "palitra: fork() was called on a loop thread and the child returned to the "
      "inherited loop; the child exits now (call exec or _exit in the child)\n");
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
    return !sub_.queue_empty_hint() || (!grace_ && !stopping_ && !accepting());
  };
  // relaxed: the loop is this budget's only writer.
  const std::int64_t budget = loop_budget_.load(std::memory_order_relaxed);
  auto note = [&](bool hit) {
    const std::int64_t n = spin_policy::adapt(budget, loop_spin_.count(), hit);
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
    // The pass that led here has just polled I/O: the first round does not.
    bool polled = true;
    for (;;) {
      if (work_waiting()) return note(true);
      // A timer or I/O ending the phase is a miss: the hand-over exists to
      // catch submissions, and a loop driven by I/O alone (an HTTP client
      // fanning out, a socket server) spends it in epoll_wait(0) calls.
      // Its budget then halves to 0 and it sleeps in the reactor at once, as
      // a plain epoll loop does; the next submission caught within the
      // ceiling restores it (spin_policy.hpp).
      if (timer_node* t = timers_.top(); t != nullptr && t->deadline <= clock::now())
        return note(false);
      // I/O completes during the hand-over too, not up to loop_spin late.
      if (!polled && poll_pass(reactor_) > 0) return note(false);
      polled = false;
      if (poll) {
        for (int i = 0; i < 16 && !work_waiting(); ++i) os_sync::pause(); // ~0.3 µs
      } else {
        mark_away(); // run() marks it running again at the next pass
        platform::yield_cpu();
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
  if (!sub_.arm_for_sleep(grace_ || stopping_)) return note(true); // W1
  std::int64_t sleep_ns = next_deadline();
  // A queue whose W1 re-check is approximate bounds the sleep (only the
  // bench's moodycamel ablation: bench/ablation/mc_queue.hpp I2).
  if constexpr (submission_queue_t::max_sleep_ns >= 0)
    if (sleep_ns < 0 || sleep_ns > submission_queue_t::max_sleep_ns)
      sleep_ns = submission_queue_t::max_sleep_ns;
  reactor_.poll(sleep_ns); // dispatches I/O completions too
  sub_.disarm(); // W3
  // Woken by a submission (not a timer, a close or a spurious wake): would a
  // full-ceiling phase have caught it?
  if (!sub_.queue_empty_hint())
    note(spin_policy::slept_within(
        std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - idle_since).count(),
        loop_spin_.count()));
  else
    note(false); // woken by I/O or a timer: the hand-over could not have helped
}

static_assert(std::is_signed_v<clock::rep> && sizeof(clock::rep) <= sizeof(std::int64_t),
              "grace_until_ holds steady_clock ticks in an int64");

void loop::request_stop(std::int64_t until, grace_notice& notice) noexcept {
  if (until <= grace_expired) until = grace_expired; // a deadline is never grace_none
  std::int64_t seen = grace_none;
  // E5, relaxed: the first closer's value is published by its S1 (release,
  // to the loop's acquire read of the gate); a later closer's by its push.
  if (grace_until_.compare_exchange_strong(seen, until, std::memory_order_relaxed,
                                           std::memory_order_relaxed)) {
    sub_.request_stop(waker{this}); // S1 (fails only after an abandon(): nothing to add)
    return;
  }
  // A later closer (E5): lower, never raise. relaxed: as above.
  bool lowered = false;
  while (until < seen) {
    if (grace_until_.compare_exchange_weak(seen, until, std::memory_order_relaxed,
                                           std::memory_order_relaxed)) {
      lowered = true;
      break;
    }
  }
  // Refused once stopped: the loop is past the grace, nothing to tell it.
  if (lowered) (void)sub_.submit_unless_stopped(notice, waker{this}); // G1''
}

bool loop::cancelling() const noexcept {
  if (stopping_) return true;
  if (accepting()) return false;
  // E7, relaxed: the acquire in accepting() ordered the first closer's
  // write; a later closer's lowering may be seen late, as its notice is.
  return grace_until_.load(std::memory_order_relaxed) <=
         clock::now().time_since_epoch().count();
}

void loop::dispatch_grace_notice(queue_node*, loop& l) noexcept { l.regrace(); }

void loop::on_grace_end(void* ctx) noexcept { static_cast<loop*>(ctx)->end_grace(); }

void loop::enter_stop() noexcept {
  // relaxed: see cancelling() (this runs right after a pass saw S1).
  const std::int64_t until = grace_until_.load(std::memory_order_relaxed);
  const auto now = clock::now();
  if (until > now.time_since_epoch().count()) { // running -> grace
    grace_timer_.deadline = clock::time_point(clock::duration(until));
    grace_timer_.fire = &on_grace_end;
    grace_timer_.ctx = this;
    try {
      timers_.push(grace_timer_);
      grace_ = true;
      return;
    } catch (...) {
      // No memory for the timer: the grace could not end on time, so there
      // is none; close as close() does.
    }
  }
  begin_stop(); // running -> stopping
}

void loop::regrace() noexcept {
  // Not in grace: either the loop has not looked at S1 yet (enter_stop reads
  // grace_until_ then) or the grace is over. relaxed: the notice's pop
  // ordered the closer's write.
  if (!grace_) return;
  const std::int64_t until = grace_until_.load(std::memory_order_relaxed);
  if (until <= clock::now().time_since_epoch().count()) return end_grace();
  const auto d = clock::time_point(clock::duration(until));
  if (d >= grace_timer_.deadline) return;
  timers_.erase(grace_timer_);
  grace_timer_.deadline = d;
  try {
    timers_.push(grace_timer_); // the slot it just left: no allocation in practice
  } catch (...) {
    end_grace(); // cannot wait for the earlier deadline: end the grace now
  }
}

void loop::end_grace() noexcept {
  grace_ = false;
  timers_.erase(grace_timer_); // E8 (a no-op when it fired)
  begin_stop(); // grace -> stopping
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

bool loop::try_finish_stop() noexcept {
  if (!sub_.try_finish_stop()) return false; // S2: draining -> stopped
  // The final drain (E1, I1): every accepted submission is here or already
  // handled; a future may still push its cancel node (G1'), and a call
  // rejected now may have to wait for that node before it can be published.
  for (;;) {
    drain_queue();
    run_ready();
    if (awaiting_cancel_ == 0 && blocking_owed_ == 0 && sub_.producers() == 0 &&
        sub_.queue_empty() && ready_head_ == nullptr)
      break;
    mark_away();
    platform::yield_cpu();
  }
  return true;
}

void loop::run(std::uint32_t born) noexcept {
  born_ = born;
  tl_loop = this;
  for (;;) {
    bump(iterations_);
    mark_running(); // cross-CPU spin: the CPU may have changed (a preemption)
    if (!grace_ && !stopping_ && !accepting()) enter_stop(); // running -> grace | stopping
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
    if (grace_ && registry_ == nullptr && ready_head_ == nullptr) { // nothing left to wait for?
      if (sub_.producers() == 0 && sub_.queue_empty()) {
        end_grace(); // grace -> stopping, and on to draining below
      } else {
        mark_away();
        platform::yield_cpu(); // E6: a producer between G1 and G3; its call gets the grace
        continue;
      }
    }
    if (stopping_ && registry_ == nullptr && ready_head_ == nullptr &&
        blocking_owed_ == 0) { // draining
      if (try_finish_stop()) break; // stopped -> exited
      mark_away();
      platform::yield_cpu(); // a producer is between G1 and G3: let it finish
      continue;
    }
    if (ready_head_ != nullptr) continue;
    idle();
  }
  // H0 (loop_anchor.hpp): objects outliving the loop let go of it.
  while (loop_resident* res = residents_) {
    remove_resident(*res);
    res->on_loop_exit(*res);
  }
  // H3: from here, objects destroyed elsewhere clean up in place; what they
  // handed off before is in the queue now.
  anchor_->mark_gone();
  drain_queue();
  timers_.erase(slow_close_timer_); // unfired: every call unwound in time
  PALITRA_ASSERT(timers_.empty(), "a timer outlived every call on a closed loop"); // E2
  mark_away();
  tl_loop = nullptr;
}

} // namespace palitra::detail
