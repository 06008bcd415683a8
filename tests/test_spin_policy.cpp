// palitra tests — the adaptive spin policy alone (core/spin_policy.hpp):
// pure functions, so every rule is checked exactly, with no timing.
#include <cstdint>

#include "support.hpp"

#include "runtime/spin_policy.hpp"

namespace sp = palitra::detail::spin_policy;

TEST_CASE("spin policy: a hit restores the ceiling at once", "[spin]") {
  REQUIRE(sp::adapt(0, 50'000, true) == 50'000);
  REQUIRE(sp::adapt(12'500, 50'000, true) == 50'000);
  REQUIRE(sp::adapt(50'000, 0, true) == 0); // a ceiling of 0 means never spin
}

TEST_CASE("spin policy: a miss halves the budget, down to 0 below min_budget_ns", "[spin]") {
  std::int64_t b = 50'000;
  int misses = 0;
  while (b > 0) {
    const std::int64_t next = sp::adapt(b, 50'000, false);
    REQUIRE((next == b / 2 || next == 0));
    if (next == 0) REQUIRE(b / 2 < sp::min_budget_ns);
    b = next;
    ++misses;
  }
  // 50 us halves 5 times (1.5625 us), the 6th miss falls below 1 us: 0.
  REQUIRE(misses == 6);
  REQUIRE(sp::adapt(0, 50'000, false) == 0); // stays off until a hit
}

TEST_CASE("spin policy: a slept wait is a hit only within the ceiling", "[spin]") {
  REQUIRE(sp::slept_within(49'999, 50'000));
  REQUIRE(sp::slept_within(50'000, 50'000));
  REQUIRE_FALSE(sp::slept_within(50'001, 50'000));
  REQUIRE_FALSE(sp::slept_within(1, 0));
}

static_assert(sp::adapt(8'000, 8'000, false) == 4'000, "constexpr: usable at compile time");
static_assert(sp::queued_cap_factor >= 1);
