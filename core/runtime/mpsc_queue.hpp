// palitra — the submission queue: intrusive, lock-free, many producers, one
// consumer (the loop). The node is the first member of the call's own
// call record, so a push allocates nothing.
//
// Protocol (model: stress/model/palitra.pml, chan q: Q1 = q!c in Caller,
// Q2 = TAKE_ALL in Loop):
//   Q1 producer: n->next = head; CAS head: old -> n (seq_cst). Lock-free:
//      a failed CAS means another push or the consumer's take succeeded.
//   Q2 consumer: head.exchange(nullptr) (acquire) takes every node at once;
//      reversing the taken LIFO chain restores push order, so the order is
//      FIFO per producer and follows head's modification order across them.
// Memory orders: Q1's release half publishes the node (and the call record it
// heads) to Q2's acquire. Q1 is seq_cst, not just release, because it is the
// store of a store->load (Dekker) pair with the loop's sleep announcement
// (submission.hpp, wake elision W1/W2): a producer pushes and then reads `armed`,
// the loop stores `armed` and then reads head; with both seq_cst at least one
// of them sees the other, so a wake-up is never lost.
#pragma once

#include <atomic>

#include <palitra/detail/call.hpp>
#include "wait/sync_policy.hpp"

namespace palitra::detail {

template <class Sync> class basic_mpsc_queue {
public:
  /// The loop may sleep as long as it likes: W1's re-check is exact.
  static constexpr std::int64_t max_sleep_ns = -1;

  void push(queue_node* n) noexcept {
    // relaxed: only a first guess for the CAS, which re-reads on failure.
    queue_node* h = head_.load(std::memory_order_relaxed);
    do {
      n->next = h;
    } while (!head_.compare_exchange_weak(h, n, std::memory_order_seq_cst,
                                          std::memory_order_relaxed));
  }

  /// Consumer: the Dekker half of the sleep check (see the file comment).
  bool empty_seq_cst() const noexcept {
    return head_.load(std::memory_order_seq_cst) == nullptr;
  }
  /// Consumer, polling while awake: a hint only; take_all() decides.
  bool empty_hint() const noexcept {
    return head_.load(std::memory_order_relaxed) == nullptr;
  }

  /// Consumer: every queued node, oldest first (nullptr when empty).
  queue_node* take_all() noexcept {
    if (head_.load(std::memory_order_relaxed) == nullptr) return nullptr; // cheap miss
    // acquire: pairs with Q1 and makes each node's contents visible.
    queue_node* h = head_.exchange(nullptr, std::memory_order_acquire);
    queue_node* fifo = nullptr;
    while (h != nullptr) {
      queue_node* next = h->next;
      h->next = fifo;
      fifo = h;
      h = next;
    }
    return fifo;
  }

private:
  typename Sync::template atomic<queue_node*> head_{nullptr};
};

using mpsc_queue = basic_mpsc_queue<os_sync>;

} // namespace palitra::detail
