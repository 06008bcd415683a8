// palitra — the per-call completion slot: one 32-bit state word that a
// blocking caller waits on and the loop publishes to.
//
// Protocol. Model: stress/model/palitra.pml, process Caller, steps W1/A1;
// Loop macros P1/WAKE; mutant BUG_TRUST_WAKE. Deterministic schedule:
// stress/dsched/dsched_slot.cpp.
//   states: slot_pending  -> the call is in flight, the caller is awake
//           slot_waiting  -> the caller is (about to be) asleep on the word
//           slot_done     -> published: the result is readable, the loop is
//                            finished with the slot and everything it owns
//   transitions:
//     W1 caller: pending -> waiting (CAS), only after its bounded
//        yield phase found no result; then address-wait while == waiting.
//     P1 loop:   pending|waiting -> done (exchange, release). If the old
//        value was waiting, the loop wakes the address *after* the exchange.
//        The exchange is the loop's last access to the slot and to the
//        memory the slot guards (the caller may return at once).
//   The caller observes done only with an acquire load (A1), which pairs
//   with P1 and makes the result visible (ThreadSanitizer sees the pair; it
//   does not model the futex).
// Invariants:
//   I1 exactly one P1 per slot lifetime.
//   I2 the caller returns only after an A1 load read done; a wake-up alone
//      proves nothing (spurious wakes, EINTR, and a late wake meant for the
//      previous call whose slot sat at the same stack address).
//   I3 after P1 the loop touches the slot's address only as a futex key.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <type_traits>

#include "wait/sync_policy.hpp"

namespace palitra::detail {

template <class Sync> class basic_completion_slot {
public:
  static constexpr std::uint32_t slot_pending = 0;
  static constexpr std::uint32_t slot_done = 1;
  static constexpr std::uint32_t slot_waiting = 2;

  basic_completion_slot() noexcept = default;
  basic_completion_slot(const basic_completion_slot&) = delete;
  basic_completion_slot& operator=(const basic_completion_slot&) = delete;

  /// A1: true once published; the result is then visible to this thread.
  bool is_done() const noexcept {
    // acquire: pairs with P1's release exchange in publish().
    return state_.load(std::memory_order_acquire) == slot_done;
  }

  /// P1 (loop thread): publish. The slot may be gone when this returns.
  /// true if the caller was asleep and had to be woken (a futex wake).
  bool publish() noexcept {
    const void* key = &state_;
    // P1, release: publishes the result and the op's end fields to the
    // caller's A1. After this line the slot may be gone (I3): only `key`.
    if (state_.exchange(slot_done, std::memory_order_release) != slot_waiting) return false;
    Sync::wake_one(key);
    return true;
  }

  /// How a wait ended, for the adaptive spin policy (core/runtime/spin_policy.hpp).
  enum class wait_end {
    done,    ///< published before the wait began
    yielded, ///< published during the yield phase
    slept,   ///< the caller slept on the word
  };

  /// Caller: yield while the loop works until `since + spin`, then sleep on
  /// the word until published (keeps I2). `since` is a clock reading the
  /// caller already has (its submit stamp), so the common case -- published
  /// by the time the first yield returns -- reads no clock here. Blocks: yes.
  wait_end wait_from(std::chrono::steady_clock::time_point since,
                     std::chrono::nanoseconds spin) noexcept {
    if (spin <= spin.zero()) return wait_yielding(nullptr);
    return wait_yielding([until = since + spin] { return Sync::now() < until; });
  }

  /// Caller: yield at least once, and again for as long as `keep()` (asked
  /// after each yield that found no result) says so; then sleep on the word
  /// until published (keeps I2). `nullptr`: sleep at once. Blocks: yes.
  template <class Keep> wait_end wait_yielding(Keep&& keep) noexcept {
    if (is_done()) return wait_end::done;
    if constexpr (!std::is_null_pointer_v<std::remove_cvref_t<Keep>>) {
      if (yield_phase(keep)) return wait_end::yielded;
    }
    announce_sleep();
    while (!is_done()) Sync::wait(state_, slot_waiting); // keeps I2
    return wait_end::slept;
  }

  /// Caller, before wait_from(): spin on the word with the CPU's pause hint
  /// -- no syscall, the CPU stays ours -- for as long as `keep()` (asked
  /// every spin_chunk pauses) says the loop is making progress on another
  /// CPU. Such a caller's result arrives without its CPU, so handing the CPU
  /// over (a sched_yield: a syscall, docs/spin.md) would only cost. true once published (A1); false leaves the word untouched, so
  /// wait_from() follows as if nothing happened (W1 is still to come).
  template <class Keep> bool spin_phase(Keep&& keep) noexcept {
    for (;;) {
      for (int i = 0; i < spin_chunk; ++i) {
        if (is_done()) return true;
        Sync::pause();
      }
      if (!keep()) return is_done();
    }
  }

  /// As wait_from(), measured from now.
  wait_end wait(std::chrono::nanoseconds spin) noexcept {
    if (is_done()) return wait_end::done;
    return wait_from(spin > spin.zero() ? Sync::now() : std::chrono::steady_clock::time_point{},
                     spin);
  }

  /// As wait(), but gives up at `deadline`; returns is_done().
  bool wait_until(std::chrono::steady_clock::time_point deadline,
                  std::chrono::nanoseconds spin) noexcept {
    if (is_done()) return true;
    const auto now = Sync::now();
    if (deadline <= now) return false;
    const auto budget = std::min<std::chrono::nanoseconds>(spin, deadline - now);
    if (budget > budget.zero() &&
        yield_phase([until = now + budget] { return Sync::now() < until; }))
      return true;
    // A timed-out waiter leaves the word at waiting: P1 then issues one
    // harmless wake.
    announce_sleep();
    while (!is_done()) {
      if (!Sync::wait_until(state_, slot_waiting, deadline) && Sync::now() >= deadline)
        return is_done();
    }
    return true;
  }

private:
  static constexpr int spin_chunk = 8; // pauses between keep() checks

  // The bounded hand-over phase. When the caller shares a CPU with the loop
  // it must give its CPU away rather than spin on it (docs/spin.md has the
  // measurements: a pause spin there costs more per call than it saves).
  //
  // The result is checked before the clock: under load the first yield
  // usually returns to a published slot, and that path reads no clock.
  template <class Keep> bool yield_phase(Keep&& keep) const noexcept {
    do {
      Sync::yield();
      if (is_done()) return true;
    } while (keep());
    return false;
  }

  void announce_sleep() noexcept {
    std::uint32_t expected = slot_pending;
    // W1. relaxed on success: the CAS only announces the sleep and
    // publishes nothing; on failure the word is done (or already waiting
    // after a timed wait) and the caller re-reads it with acquire (A1).
    state_.compare_exchange_strong(expected, slot_waiting, std::memory_order_relaxed,
                                   std::memory_order_relaxed);
  }

  typename Sync::template atomic<std::uint32_t> state_{slot_pending};
};

using completion_slot = basic_completion_slot<os_sync>;

} // namespace palitra::detail
