// palitra — the caller side of a call: how a blocking caller (run, gather,
// future::get, ~future) waits for its result. Runs on caller threads only;
// reads the call and its runner's wait hints, never the runner (which may
// be destroyed as soon as the call is published: close() then ~runner).
#include <chrono>
#include <cstdint>

#include "runtime/call.hpp"
#include "runtime/spin_policy.hpp"
#include "runtime/wait_hints.hpp"

namespace palitra::detail {
namespace {

thread_local std::uint64_t tl_spin_hits = 0; // cross-CPU spin: waits it ended
using clock = std::chrono::steady_clock;
using wait_end = completion_slot::wait_end;

void note_caller_wait(wait_hints& h, bool hit) noexcept {
  // relaxed: a heuristic; the store happens only on a change, so a loaded
  // runner whose calls all hit never writes this line.
  const std::int64_t b = h.caller_budget.load(std::memory_order_relaxed);
  const std::int64_t n = spin_policy::adapt(b, h.caller_ceiling.load(std::memory_order_relaxed), hit);
  if (n != b) h.caller_budget.store(n, std::memory_order_relaxed);
}

} // namespace

// ---- cross-CPU spin ------------------------------------------------------------
//
// A blocking caller can wait in three ways: spin on its slot with the CPU's
// pause hint (no syscall), yield its CPU (sched_yield), or sleep on the slot
// (futex). Which is cheapest depends on where the loop runs (the figures
// behind each choice: docs/spin.md):
//   - loop on the caller's CPU: only giving the CPU away lets the loop run;
//     a pause spin would hold the CPU the loop needs. Yield, then sleep.
//   - loop running on another CPU: the result comes without this CPU. A
//     pause spin sees it within a fraction of a microsecond of the publish,
//     where a yield costs a syscall and, with other threads runnable here,
//     a context switch.
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

namespace {
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
      // The clock is read every 8th check (64 pauses), not each.
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
  // outlasts the budget (one context switch per caller), and without this
  // rule a tenth of the calls at 64 callers slept (docs/spin.md). So a
  // caller whose op the loop has not
  // popped yet keeps yielding past the budget, up to spin_policy::queued_cap_factor
  // budgets (a loop stuck in a long resume must not keep it forever).
  wait_end end;
  if (budget <= budget.zero()) {
    end = s.wait_yielding(nullptr);
  } else {
    const clock::time_point until = since + budget;
    // Saturated: runner_options::caller_spin may be near the int64 limit.
    const auto cap_span = ceiling > std::chrono::nanoseconds::max() / spin_policy::queued_cap_factor
                              ? std::chrono::nanoseconds(std::chrono::hours(24 * 365))
                              : spin_policy::queued_cap_factor * ceiling;
    const clock::time_point cap = since + cap_span;
    end = s.wait_yielding([&] {
      const auto now = clock::now();
      // a relaxed read of state_: a hint (call.hpp C4).
      return now < until || (!op.accepted() && now < cap);
    });
  }
  // Only a wait that slept reads the clock: it has just paid for a futex
  // wake, so one more clock read is noise. A yield-phase finish is a hit.
  note_caller_wait(h, end != wait_end::slept ||
                         spin_policy::slept_within(
                             std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - since).count(),
                             ceiling.count()));
}

} // namespace

void call_wait(const wait_ref& w, call_record_storage& s, bool from_submit) noexcept {
  call_record& op = call_record::of(s);
  if (from_submit) {
    // A blocking call: measured from its submit stamp, no clock read here.
    await_slot(*w.hints, op, op.submitted_at_, op.cpu_);
  } else {
    await_slot(*w.hints, op, clock::now(), current_cpu_tag());
  }
}

} // namespace palitra::detail
