// palitra — BENCHMARK-ONLY ablation: the submission queue over
// moodycamel::ConcurrentQueue<queue_node*>, behind the same interface as
// basic_mpsc_queue (mpsc_queue.hpp), so palitra_bench_mcqueue runs the very
// same run() path (gate, wake elision, loop) with only the queue swapped.
// Built only into bench/'s palitra_mcqueue (PALITRA_SUBMISSION_QUEUE_HEADER names this file);
// never in the library, the tests or the stress suites.
//
// Why it is not the production queue (DESIGN.md §1, Submission):
//   - push without a token uses an implicit producer: the first push from a
//     thread allocates a producer (and its block index) and registers it in a
//     hash keyed by thread id; producers are never freed before the queue is
//     (thread-exit recycling is compiled out), so thread churn grows the
//     producer list that every size_approx() and dequeue walks
//     (concurrentqueue #288). The intrusive queue allocates nothing.
//   - size_approx() is, by its author's word, an approximation (#265), and
//     the loop's "looks empty, go to sleep" decision (W1) rests on it here.
//   - the order is FIFO per producer only, not across producers (#52).
//
// Protocol (the one of mpsc_queue.hpp, Q1/Q2, over moodycamel's indices):
//   Q1 producer: enqueue (moodycamel publishes the element with a release
//      store of its producer's tailIndex), then a seq_cst fence.
//   Q2 consumer (one thread, the loop): try_dequeue_bulk until a batch comes
//      back short; the nodes are chained through ->next in dequeue order.
// Memory orders: moodycamel's own release (tailIndex) / acquire (dequeue)
// publishes the node and the call record it heads. Its stores are release only,
// so Q1 cannot be the seq_cst store of the Dekker pair with W1 the way
// basic_mpsc_queue's CAS is: the fence after enqueue (producer: tail store,
// fence, W2's load of armed_) and the fence in empty_seq_cst (loop: W1's
// store of armed_, fence, load of every tailIndex) restore it: either the
// loop's fence comes first and W2 reads armed_ == 1, or the producer's does
// and size_approx() reads the new tail (and the producer-list entry a first
// push added before it). ThreadSanitizer does not model fences: this file is
// not for TSan builds.
// Invariants:
//   I1 only the loop thread calls empty_seq_cst, empty_hint and take_all, so
//      headIndex moves under the reader's own feet only: size_approx() does
//      not undercount a node whose tail store it can see.
//   I2 even so the ablation never lets the loop sleep unbounded on
//      size_approx(): loop::idle caps the reactor wait at 1 ms in this build.
#pragma once

#include <atomic>
#include <cstddef>

#include <concurrentqueue/concurrentqueue.h>

#include <palitra/config.hpp>
#include <palitra/detail/call.hpp>

namespace palitra::detail {

class mc_submission_queue {
public:
  /// Any thread. Q1. Aborts if moodycamel cannot allocate (push is noexcept
  /// in the submission protocol; the ablation does not model that failure).
  void push(queue_node* n) noexcept {
    const bool ok = q_.enqueue(n); // implicit producer: no token, as run() would
    PALITRA_ASSERT(ok, "moodycamel enqueue failed to allocate");
    // seq_cst fence: the store->load pair Q1 (tail store) -> W2 (armed_ load).
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }

  /// Loop thread. W1's re-check: the load half of the Dekker pair.
  bool empty_seq_cst() const noexcept {
    // seq_cst fence: the store->load pair W1 (armed_ store) -> tail loads.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return q_.size_approx() == 0;
  }
  /// Loop thread, polling while awake: a hint only; take_all() decides.
  bool empty_hint() const noexcept { return q_.size_approx() == 0; }

  /// Loop thread. Q2: the nodes seen, in dequeue order (nullptr when none).
  /// Stops at the first short batch rather than at an empty one, so
  /// producers that never wait for their result cannot keep one drain going
  /// forever; the rest is taken on the next loop pass (W1 sees it first).
  queue_node* take_all() noexcept {
    constexpr std::size_t batch = 64; // 512 bytes of loop stack per pass
    queue_node* buf[batch];
    queue_node* head = nullptr;
    queue_node* tail = nullptr;
    for (;;) {
      const std::size_t got = q_.try_dequeue_bulk(buf, batch);
      for (std::size_t i = 0; i < got; ++i) {
        buf[i]->next = nullptr;
        if (tail == nullptr) head = buf[i];
        else tail->next = buf[i];
        tail = buf[i];
      }
      if (got < batch) return head;
    }
  }

  /// I2: the loop never sleeps longer than this on W1's approximate check.
  static constexpr std::int64_t max_sleep_ns = 1'000'000;

private:
  moodycamel::ConcurrentQueue<queue_node*> q_;
};

/// The submission-queue selector's hook (core/submission_queue.hpp).
using submission_queue_t = mc_submission_queue;

} // namespace palitra::detail
