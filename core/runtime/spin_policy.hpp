// palitra — the adaptive spin policy: how long a waiting side (a blocking
// caller, the idle loop) gives its CPU away before it sleeps. Pure: no
// state, no clock, no atomics, so it is unit-tested alone
// (tests/test_spin_policy.cpp); callers keep the budgets (wait_hints.hpp,
// loop.hpp). The measurements behind the defaults: docs/spin.md.
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

#pragma once

#include <cstdint>

namespace palitra::detail::spin_policy {

/// Below this a waiting phase is not worth one yield: the budget drops to 0.
inline constexpr std::int64_t min_budget_ns = 1000;
/// A caller whose call the loop has not popped yet keeps yielding for up to
/// this many budgets past its own (caller_wait.cpp, "queued calls").
inline constexpr int queued_cap_factor = 20;

/// The next budget after one wait: back to the ceiling on a hit, halved
/// (0 below min_budget_ns) on a miss.
constexpr std::int64_t adapt(std::int64_t budget, std::int64_t ceiling, bool hit) noexcept {
  if (hit) return ceiling;
  const std::int64_t half = budget / 2;
  return half < min_budget_ns ? 0 : half;
}

/// Whether a wait that slept counts as a hit: it ended within the ceiling,
/// measured from its start (a full-ceiling phase would have caught it).
constexpr bool slept_within(std::int64_t waited_ns, std::int64_t ceiling_ns) noexcept {
  return waited_ns <= ceiling_ns;
}

} // namespace palitra::detail::spin_policy
