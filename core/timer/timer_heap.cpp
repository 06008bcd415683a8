// palitra — timer heap (see timer_heap.hpp).
#include "timer/timer_heap.hpp"

namespace palitra::detail {

void timer_heap::push(timer_node& t) {
  heap_.push_back(&t); // may throw: t is not armed then
  t.seq = next_seq_++;
  place(heap_.size() - 1, &t);
  sift_up(heap_.size() - 1);
}

void timer_heap::erase(timer_node& t) noexcept {
  if (!t.armed()) return;
  const std::size_t i = t.heap_index;
  timer_node* last = heap_.back();
  heap_.pop_back();
  t.heap_index = timer_node::npos;
  if (last == &t) return;
  place(i, last);
  sift_up(i);
  sift_down(last->heap_index);
}

timer_node* timer_heap::pop() noexcept {
  if (heap_.empty()) return nullptr;
  timer_node* t = heap_.front();
  erase(*t);
  return t;
}

void timer_heap::sift_up(std::size_t i) noexcept {
  timer_node* t = heap_[i];
  while (i > 0) {
    const std::size_t parent = (i - 1) / 2;
    if (!less(t, heap_[parent])) break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, t);
}

void timer_heap::sift_down(std::size_t i) noexcept {
  const std::size_t n = heap_.size();
  timer_node* t = heap_[i];
  for (;;) {
    std::size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && less(heap_[c + 1], heap_[c])) ++c;
    if (!less(heap_[c], t)) break;
    place(i, heap_[c]);
    i = c;
  }
  place(i, t);
}

bool timer_heap::valid() const noexcept {
  for (std::size_t i = 0; i < heap_.size(); ++i) {
    if (heap_[i]->heap_index != i) return false;
    if (i > 0 && less(heap_[i], heap_[(i - 1) / 2])) return false;
  }
  return true;
}

} // namespace palitra::detail
