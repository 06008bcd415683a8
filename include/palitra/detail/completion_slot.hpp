// palitra — the per-call completion slot: one 32-bit state word that a
// blocking caller waits on and the loop publishes to.
//
// Protocol (spin model: stress/model, when it lands; names match):
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

#include <atomic>
#include <chrono>
#include <cstdint>

namespace palitra::detail {

class completion_slot {
public:
  static constexpr std::uint32_t slot_pending = 0;
  static constexpr std::uint32_t slot_done = 1;
  static constexpr std::uint32_t slot_waiting = 2;

  completion_slot() noexcept = default;
  completion_slot(const completion_slot&) = delete;
  completion_slot& operator=(const completion_slot&) = delete;

  /// A1: true once published; the result is then visible to this thread.
  bool is_done() const noexcept {
    // acquire: pairs with P1's release exchange in publish().
    return state_.load(std::memory_order_acquire) == slot_done;
  }

  /// P1 (loop thread): publish. The slot may be gone when this returns.
  void publish() noexcept;

  /// Caller: yield for up to `spin` while the loop works, then sleep on the
  /// word until published (keeps I2). Blocks: yes.
  void wait(std::chrono::nanoseconds spin) noexcept;

  /// As wait(), but gives up at `deadline`; returns is_done().
  bool wait_until(std::chrono::steady_clock::time_point deadline,
                  std::chrono::nanoseconds spin) noexcept;

private:
  std::atomic<std::uint32_t> state_{slot_pending};
};

} // namespace palitra::detail
