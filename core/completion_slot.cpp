// palitra — completion slot (protocol block: include/palitra/detail/completion_slot.hpp).
#include <sched.h>

#include <palitra/detail/completion_slot.hpp>

#include "address_wait.hpp"

namespace palitra::detail {
namespace {

using clock = std::chrono::steady_clock;

// The bounded hand-over phase. On these 2-vCPU guests the caller usually
// shares a vCPU with the loop, so the caller must give its CPU away rather
// than spin on it: a 20 µs `pause` spin cost 46 µs per call, yielding cut a
// round trip from 3.7 µs to 2.7 µs (research/peer-benchmarks.md).
bool yield_phase(const completion_slot& s, std::chrono::nanoseconds spin) noexcept {
  if (spin <= spin.zero()) return false;
  const auto until = clock::now() + spin;
  do {
    sched_yield();
    if (s.is_done()) return true;
  } while (clock::now() < until);
  return false;
}

} // namespace

void completion_slot::publish() noexcept {
  const void* key = &state_;
  // P1, release: publishes the result and the op's end fields to the
  // caller's A1 acquire load. After this line the slot may be gone (I3).
  if (state_.exchange(slot_done, std::memory_order_release) == slot_waiting)
    address_wake_one(key);
}

void completion_slot::wait(std::chrono::nanoseconds spin) noexcept {
  if (is_done() || yield_phase(*this, spin)) return;
  std::uint32_t expected = slot_pending;
  // W1. relaxed on success: the CAS only announces the sleep and publishes
  // nothing; on failure the word is done (or already waiting after a timed
  // wait) and the loop below re-reads it with acquire (A1).
  state_.compare_exchange_strong(expected, slot_waiting, std::memory_order_relaxed,
                                 std::memory_order_relaxed);
  while (!is_done()) address_wait(state_, slot_waiting); // keeps I2
}

bool completion_slot::wait_until(clock::time_point deadline,
                                 std::chrono::nanoseconds spin) noexcept {
  if (is_done()) return true;
  const auto now = clock::now();
  if (deadline <= now) return false;
  if (yield_phase(*this, std::min<std::chrono::nanoseconds>(spin, deadline - now))) return true;
  std::uint32_t expected = slot_pending;
  // W1, as in wait(). A timed-out waiter leaves the word at waiting: the
  // loop's P1 then issues one harmless wake.
  state_.compare_exchange_strong(expected, slot_waiting, std::memory_order_relaxed,
                                 std::memory_order_relaxed);
  while (!is_done()) {
    if (!address_wait_until(state_, slot_waiting, deadline) && clock::now() >= deadline)
      return is_done();
  }
  return true;
}

} // namespace palitra::detail
