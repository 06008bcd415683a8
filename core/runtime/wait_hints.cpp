// palitra — the wait-hint pool (protocol: wait_hints.hpp, H1-H3).
#include <new>

#include "runtime/wait_hints.hpp"

namespace palitra::detail {
namespace {

constexpr std::size_t chunk_blocks = 16;
struct hint_chunk {
  wait_hints blocks[chunk_blocks];
  hint_chunk* next = nullptr; // immutable once published
};
// acquire/release: a chunk is published fully built (pairs with the loads
// in acquire_wait_hints).
std::atomic<hint_chunk*> g_chunks{nullptr};
std::atomic<std::size_t> g_pool_size{0};

wait_hints* try_lease(hint_chunk* head) noexcept {
  for (hint_chunk* c = head; c != nullptr; c = c->next) {
    for (wait_hints& h : c->blocks) {
      bool expected = false;
      // acquire: pairs with release_wait_hints' release store, so the last
      // owner's writes to the block happen before ours (H1).
      if (!h.taken.load(std::memory_order_relaxed) &&
          h.taken.compare_exchange_strong(expected, true, std::memory_order_acquire,
                                          std::memory_order_relaxed))
        return &h;
    }
  }
  return nullptr;
}
} // namespace

wait_hints& acquire_wait_hints(std::int64_t ceiling_ns) {
  // acquire: see g_chunks.
  wait_hints* h = try_lease(g_chunks.load(std::memory_order_acquire));
  if (h == nullptr) {
    auto* fresh = new hint_chunk; // never freed (H2, H3)
    h = &fresh->blocks[0];
    h->taken.store(true, std::memory_order_relaxed); // not yet visible to anyone
    hint_chunk* head = g_chunks.load(std::memory_order_relaxed);
    do {
      fresh->next = head;
      // release: publishes the chunk's initialised blocks (g_chunks).
    } while (!g_chunks.compare_exchange_weak(head, fresh, std::memory_order_release,
                                             std::memory_order_relaxed));
    g_pool_size.fetch_add(chunk_blocks, std::memory_order_relaxed); // a statistic
  }
  // relaxed: hints (H3).
  h->caller_ceiling.store(ceiling_ns, std::memory_order_relaxed);
  h->caller_budget.store(ceiling_ns, std::memory_order_relaxed);
  h->presence.store(0, std::memory_order_relaxed);
  return *h;
}

void release_wait_hints(wait_hints& h) noexcept {
  h.presence.store(0, std::memory_order_relaxed); // late waiters stop spinning
  // release: pairs with the next lease's CAS (H1).
  h.taken.store(false, std::memory_order_release);
}

std::size_t wait_hints_pool_size() noexcept {
  return g_pool_size.load(std::memory_order_relaxed);
}


} // namespace palitra::detail
