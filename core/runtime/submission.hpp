// palitra — the submission side of a loop: the lifecycle gate, the MPSC
// queue and the wake elision, as one protocol over a sync policy
// (sync_policy.hpp), so that the production code runs under the
// deterministic scheduler too (stress/dsched).
// Model: stress/model/palitra.pml, Caller G1/G2/W2/G3, request_stop S1,
// Loop S2/W1/W3; mutants BUG_NO_GATE, BUG_WAKE_ORDER, BUG_RELAXED.
//
// ---------------------------------------------------------------------------
// Protocol 1: the lifecycle gate (gate_). One 64-bit word:
//   bits 0-1: lifecycle state   gate_running -> gate_stopping -> gate_stopped
//   bits 2- : producers inside the gate (between G1 and G3)
//   G0 producer (submit): a relaxed read; not running -> report closed
//      without touching the count (A8: retrying producers cannot starve S2).
//   G1 producer: fetch_add(one). If the state it read is not running,
//      fetch_sub and report closed: nothing was pushed. Safety rests on
//      gate_'s modification order (a producer whose add comes after S1 in
//      it sees stopping; one whose add comes before is counted, and S2
//      waits for it), plus G3(release) -> S2(acquire) for the push; the
//      acquire on G1 is kept so the producer's later reads of the loop's
//      fields are ordered after a running runner was observed.
//   G2 producer: push the node (Q1), then the wake check (W2).
//   G3 producer: fetch_sub(one) (release: its push and wake happen before
//      the loop's S2 reads the count 0).
//   S1 close(), any thread: CAS running -> stopping that also enters the
//      gate (count + 1, seq_cst: pairs with W1), then W2 and G3.
//   S2 loop: once stopping, nothing in flight, and producers == 0:
//      CAS (stopping, 0) -> stopped (acq_rel). After S2 no producer passes
//      G1, and every producer that passed it has finished G2, so one last
//      drain sees every accepted submission.
//   G1' (future cancel nodes): fetch_add without the state check; the op it
//      cancels is still in flight, so the loop cannot pass S2 before the
//      node is popped (call.hpp, C2), and the final drain waits for the count.
//   G1'' (a closer's grace notice, loop.cpp E5): G1 whose state check also
//      admits stopping: the push is refused only once stopped. The same
//      modification-order argument as G1 keeps it safe: an add before S2
//      holds S2 off until its G3 (the loop is alive, the wake fd open, and
//      the final drain pops the node); an add after S2 sees stopped and
//      backs off untouched. S1 and S2 are unchanged by it, and so is the
//      spin model (stress/model/palitra.pml), whose Caller G1 covers it but
//      for the wider predicate: one push per closer, so no retry storm.
// Invariants: I1 no push after the final drain. I2 no wake-fd write after
// the loop thread exited (every writer is a counted producer). I3 a
// submission accepted by G1 ends exactly once (started or rejected).
//
// Protocol 2: wake elision (armed_), libuv/folly style.
//   W1 loop, about to block: armed_ = 1 (seq_cst), then re-check the queue
//      and the gate (both seq_cst); if anything is there: armed_ = 0, no
//      block. The gate re-check pairs with S1 the way the queue re-check
//      pairs with Q1: a close() is never slept through.
//   W2 producer, after its push: if armed_ (seq_cst load) is 1 and its
//      exchange(0) returned 1, it alone writes the wake fd (one write per
//      sleep). W1's store->load and Q1's push->load of W2 form a Dekker
//      pair: with all four seq_cst, either the loop sees the node or the
//      producer sees armed_ == 1. Under load the loop never arms, and a call
//      costs the producer one plain load: no syscall.
//   W3 loop, after the reactor returned: armed_ = 0 (relaxed: a producer
//      that still reads 1 writes one superfluous, harmless wake).
// ---------------------------------------------------------------------------
#pragma once

#include <cstdint>

#include <palitra/detail/call.hpp>
#include "wait/sync_policy.hpp"

#include "runtime/mpsc_queue.hpp"

namespace palitra::detail {

/// The queue is a parameter only for the benchmark ablation (bench/ablation/mc_queue.hpp):
/// production and dsched use basic_mpsc_queue. Queue provides push(node)
/// (Q1: a full fence between the push and the caller's next seq_cst load,
/// for W2), empty_seq_cst() (W1's re-check, after a full fence), empty_hint()
/// and take_all() (every node taken, chained through queue_node::next,
/// oldest first per producer).
template <class Sync, class Queue = basic_mpsc_queue<Sync>> class basic_submission {
public:
  static constexpr std::uint64_t gate_running = 0;
  static constexpr std::uint64_t gate_stopping = 1;
  static constexpr std::uint64_t gate_stopped = 2;
  static constexpr std::uint64_t gate_state_mask = 3;
  static constexpr std::uint64_t gate_one = 4;

  // ---- producers (any thread). `wake` writes the wake fd.

  /// G1..G3. false if not running (nothing was pushed).
  template <class Wake> bool submit(queue_node& n, Wake&& wake) noexcept {
    // G0, relaxed: a plain read first, so a storm of producers retrying on a
    // stopping runner never touches the count and cannot keep S2 from
    // passing (libuv's uv_async_send reads `pending` first for the same
    // reason). Only a hint: G1 decides.
    if ((gate_.load(std::memory_order_relaxed) & gate_state_mask) != gate_running) return false;
    return enter_and_push(n, wake, gate_running);
  }

  /// G1'..G3: push whatever the state (future cancel nodes).
  template <class Wake> void submit_always(queue_node& n, Wake&& wake) noexcept {
    gate_.fetch_add(gate_one, std::memory_order_acquire); // G1'
    queue_.push(&n);
    wake_if_armed(wake);
    gate_.fetch_sub(gate_one, std::memory_order_release); // G3
  }

  /// G1''..G3: push unless stopped (a closer's grace notice, loop.cpp E5).
  /// false once stopped (nothing was pushed: the stop sequence is past the
  /// grace phase, so there is nothing left to notify).
  template <class Wake> bool submit_unless_stopped(queue_node& n, Wake&& wake) noexcept {
    return enter_and_push(n, wake, gate_stopping);
  }

  /// S1. true for the call that moved running -> stopping.
  template <class Wake> bool request_stop(Wake&& wake) noexcept {
    // relaxed first read: the CAS re-reads.
    std::uint64_t g = gate_.load(std::memory_order_relaxed);
    for (;;) {
      if ((g & gate_state_mask) != gate_running) return false;
      // S1 enters the gate in the same CAS (count + 1), so the wake below is
      // a counted producer's and cannot race the loop thread's exit (I2).
      // seq_cst: S1 is the store of a store->load pair with W1 (the loop
      // stores armed_, then reads the gate; we store the gate, then read
      // armed_): with acq_rel alone a weak machine may let both miss, and
      // the loop would sleep through close() (found by the spin model,
      // mutant BUG_RELAXED).
      if (gate_.compare_exchange_weak(g, ((g & ~gate_state_mask) | gate_stopping) + gate_one,
                                      std::memory_order_seq_cst, std::memory_order_relaxed))
        break;
    }
    wake_if_armed(wake); // W2
    gate_.fetch_sub(gate_one, std::memory_order_release); // G3
    return true;
  }

  bool accepting() const noexcept {
    // acquire: pairs with S1/S2, so a caller that sees closed sees why.
    return (gate_.load(std::memory_order_acquire) & gate_state_mask) == gate_running;
  }

  std::uint64_t wakeups() const noexcept {
    return wakeups_.load(std::memory_order_relaxed); // a counter
  }

  // ---- the loop (consumer)

  queue_node* take_all() noexcept { return queue_.take_all(); }
  bool queue_empty_hint() const noexcept { return queue_.empty_hint(); }
  bool queue_empty() const noexcept { return queue_.empty_seq_cst(); }

  std::uint64_t producers() const noexcept {
    // acquire: pairs with G3 so the producers' pushes are visible.
    return gate_.load(std::memory_order_acquire) / gate_one;
  }

  /// W1: announce the sleep and re-check. true: the loop may block now.
  /// `stopping` is the loop's own knowledge that it already saw S1.
  bool arm_for_sleep(bool stopping) noexcept {
    armed_.store(1, std::memory_order_seq_cst); // W1, store half of the Dekker pairs
    // Both re-checks are seq_cst loads: the load halves of the pairs with
    // Q1 (a push) and S1 (close()).
    if (!queue_.empty_seq_cst() ||
        (!stopping &&
         (gate_.load(std::memory_order_seq_cst) & gate_state_mask) != gate_running)) {
      armed_.store(0, std::memory_order_relaxed); // W3
      return false;
    }
    return true;
  }

  /// W3.
  void disarm() noexcept { armed_.store(0, std::memory_order_relaxed); }

  /// S2. true: stopped; no producer can pass G1 any more.
  bool try_finish_stop() noexcept {
    std::uint64_t expected = gate_stopping; // and zero producers
    // S2, acquire: pairs with every producer's G3, so their pushes are seen
    // by the final drain. No release half: no thread reads what the loop did
    // before S2 through the gate (A15).
    return gate_.compare_exchange_strong(expected, gate_stopped, std::memory_order_acquire,
                                         std::memory_order_relaxed);
  }

private:
  /// G1 (latest == gate_running) or G1'' (latest == gate_stopping): enter
  /// the gate if its state is at most `latest`, then G2, W2, G3.
  template <class Wake>
  bool enter_and_push(queue_node& n, Wake& wake, std::uint64_t latest) noexcept {
    // G1 / G1'', acquire: see Protocol 1.
    const std::uint64_t g = gate_.fetch_add(gate_one, std::memory_order_acquire);
    if ((g & gate_state_mask) > latest) {
      // relaxed: we touched nothing; the count only has to come back down.
      gate_.fetch_sub(gate_one, std::memory_order_relaxed);
      return false;
    }
    queue_.push(&n);  // G2 / Q1
    wake_if_armed(wake);  // W2
    gate_.fetch_sub(gate_one, std::memory_order_release); // G3
    return true;
  }

  template <class Wake> void wake_if_armed(Wake& wake) noexcept {
    // W2: the seq_cst load is the load half of the Dekker pair with W1.
    if (armed_.load(std::memory_order_seq_cst) != 0 &&
        armed_.exchange(0, std::memory_order_seq_cst) != 0) {
      wakeups_.fetch_add(1, std::memory_order_relaxed); // a counter, publishes nothing
      wake();
    }
  }

  typename Sync::template atomic<std::uint64_t> gate_{gate_running};
  Queue queue_;
  typename Sync::template atomic<std::uint32_t> armed_{0};
  typename Sync::template atomic<std::uint64_t> wakeups_{0};
};

} // namespace palitra::detail
