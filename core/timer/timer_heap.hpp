// palitra — the loop's timers: a binary min-heap of intrusive timer_nodes
// ordered by (deadline, seq), so equal deadlines fire in arming order.
// Loop thread only. Each node records its index, so cancelling a timer is
// O(log n) and never allocates; arming allocates only when the heap grows
// past its high-water mark.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <palitra/detail/loop_hooks.hpp>

namespace palitra::detail {

class timer_heap {
public:
  bool empty() const noexcept { return heap_.empty(); }
  std::size_t size() const noexcept { return heap_.size(); }
  /// Give the heap's capacity back (an empty heap of a closed loop).
  void release_memory() noexcept { std::vector<timer_node*>().swap(heap_); }
  timer_node* top() const noexcept { return heap_.empty() ? nullptr : heap_.front(); }

  /// Arm `t` (must not be armed). Throws std::bad_alloc if the heap grows.
  void push(timer_node& t);
  /// Disarm `t` if armed; no-op otherwise.
  void erase(timer_node& t) noexcept;
  /// Disarm and return the earliest timer.
  timer_node* pop() noexcept;

  /// Checks the heap property and every node's index (tests, fuzz).
  bool valid() const noexcept;

private:
  static bool less(const timer_node* a, const timer_node* b) noexcept {
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
  }
  void place(std::size_t i, timer_node* t) noexcept {
    heap_[i] = t;
    t->heap_index = i;
  }
  void sift_up(std::size_t i) noexcept;
  void sift_down(std::size_t i) noexcept;

  std::vector<timer_node*> heap_;
  std::uint64_t next_seq_ = 0;
};

} // namespace palitra::detail
