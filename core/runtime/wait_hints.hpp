// palitra — the wait hints: what a blocking caller reads of its loop while
// it waits (the adaptive budget, its ceiling, where the loop runs), kept
// apart from the runner so that they outlive it.
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
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace palitra::detail {

/// What a waiting caller reads of its loop while it waits: the adaptive
/// caller budget and its ceiling, and the loop's presence (cross-CPU spin).
/// Type-stable: blocks come from a pool that grows and never frees (wait_hints.cpp,
/// "wait hints"), because a caller released by close() may still read its
/// block after the runner was destroyed. A runner holds its block from its
/// construction to the end of its close() (after the join), then the block
/// serves the next runner; a late reader of a reused block only misleads its
/// own heuristics for one wait, it never corrupts anything.
struct alignas(64) wait_hints {
  std::atomic<std::int64_t> caller_budget{0};  ///< ns, adaptive (spin_policy.hpp)
  std::atomic<std::int64_t> caller_ceiling{0}; ///< ns, runner_options::caller_spin
  std::atomic<std::uint32_t> presence{0};      ///< the loop's CPU tag, 0 when away
  std::atomic<bool> taken{false};              ///< owned by a runner (the pool's flag)
  wait_hints* next_in_pool = nullptr;          ///< immutable once linked
};

/// A free block of the pool (the pool grows by one chunk when none is free),
/// its budget and ceiling set to `ceiling_ns` and its presence to 0. Any
/// thread. Throws std::bad_alloc when the pool must grow and cannot.
wait_hints& acquire_wait_hints(std::int64_t ceiling_ns);
/// The adaptive caller budget of h now (spin_policy.hpp).
inline std::chrono::nanoseconds caller_spin(const wait_hints& h) noexcept {
  // relaxed: a heuristic value, publishes nothing.
  return std::chrono::nanoseconds(h.caller_budget.load(std::memory_order_relaxed));
}

/// Back to the pool (the memory stays: late waiters may still read it).
void release_wait_hints(wait_hints& h) noexcept;
/// Blocks ever made (tests: a create/close cycle must not grow the pool).
std::size_t wait_hints_pool_size() noexcept;

/// Owns one block of the pool from construction until release() or
/// destruction, whichever comes first (keeps the block from leaking when a
/// later member of the loop throws in its constructor).
class wait_hints_lease {
public:
  explicit wait_hints_lease(std::int64_t ceiling_ns) : h_(&acquire_wait_hints(ceiling_ns)) {}
  ~wait_hints_lease() { release(); }
  wait_hints_lease(const wait_hints_lease&) = delete;
  wait_hints_lease& operator=(const wait_hints_lease&) = delete;
  wait_hints& get() const noexcept { return *h_; }
  /// Loop owner only, after the loop thread ended. Idempotent.
  void release() noexcept {
    if (!released_) {
      released_ = true;
      release_wait_hints(*h_);
    }
  }
  bool released() const noexcept { return released_; }

private:
  wait_hints* h_; // never null; kept after release (late readers tolerate it)
  bool released_ = false;
};

/// Blocking waits of the calling thread that ended in the cross-CPU spin
/// (caller_wait.cpp), for tests: a thread-local count costs the call nothing shared.
std::uint64_t spin_hits_this_thread() noexcept;


} // namespace palitra::detail
