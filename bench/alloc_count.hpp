// palitra bench — counting global allocator for benchmark executables.
//
// Include from exactly ONE .cpp of an executable: it defines (not declares)
// malloc, calloc, realloc, free, memalign, posix_memalign, aligned_alloc,
// valloc, pvalloc and every replaceable global operator new/delete. The C
// functions forward to glibc's own implementation (__libc_malloc & co.), so
// every block still comes from and goes back to glibc's heap; definitions in
// the executable take precedence over libc.so's in symbol lookup, so calls
// from libstdc++, asio and palitra's library land here too. operator new and
// delete forward to these malloc/free, so a `new` is counted once.
//
// What is counted: allocation calls (malloc, calloc, realloc, the aligned
// forms) by any thread of the process while counting is on. Frees are not
// counted. Not counted: memory palitra's frame allocator takes from its
// privately dlopen()ed mimalloc (mi_malloc is not a global allocator; see
// core/alloc/frame_allocator.cpp) and anything obtained with mmap directly.
//
// Cost when off: one relaxed load per allocation. When on: one relaxed
// fetch_add on a shared counter, which is why the benchmark counts in
// separate passes and never inside a timed region.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <new>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void __libc_free(void*);
void* __libc_memalign(std::size_t, std::size_t);
void* __libc_valloc(std::size_t);
void* __libc_pvalloc(std::size_t);
}

namespace palitra_bench {

// constinit: usable by allocations made before main and by static
// initialisers of other TUs.
constinit inline std::atomic<bool> g_count_allocs{false};
constinit inline std::atomic<std::uint64_t> g_allocs{0};

inline void note_alloc() noexcept {
  // relaxed (both): a statistic read after the threads that allocated were
  // synchronised with the reader (latch/join), which orders it.
  if (g_count_allocs.load(std::memory_order_relaxed))
    g_allocs.fetch_add(1, std::memory_order_relaxed);
}

/// Counts allocation calls of the whole process between its construction and
/// stop(). Thread: construct/stop on one thread, while other threads run.
class alloc_window {
public:
  alloc_window() noexcept {
    start_ = g_allocs.load(std::memory_order_relaxed);
    g_count_allocs.store(true, std::memory_order_seq_cst); // before the calls we measure
  }
  /// Stops counting; the number of allocation calls seen.
  std::uint64_t stop() noexcept {
    g_count_allocs.store(false, std::memory_order_seq_cst);
    return g_allocs.load(std::memory_order_relaxed) - start_;
  }

private:
  std::uint64_t start_;
};

} // namespace palitra_bench

extern "C" {

void* malloc(std::size_t n) {
  palitra_bench::note_alloc();
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t m) {
  palitra_bench::note_alloc();
  return __libc_calloc(n, m);
}
void* realloc(void* p, std::size_t n) {
  palitra_bench::note_alloc();
  return __libc_realloc(p, n);
}
void free(void* p) { __libc_free(p); }
void* memalign(std::size_t a, std::size_t n) {
  palitra_bench::note_alloc();
  return __libc_memalign(a, n);
}
void* aligned_alloc(std::size_t a, std::size_t n) {
  palitra_bench::note_alloc();
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, std::size_t a, std::size_t n) {
  if (a < sizeof(void*) || (a & (a - 1)) != 0) return EINVAL;
  palitra_bench::note_alloc();
  void* p = __libc_memalign(a, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
void* valloc(std::size_t n) {
  palitra_bench::note_alloc();
  return __libc_valloc(n);
}
void* pvalloc(std::size_t n) {
  palitra_bench::note_alloc();
  return __libc_pvalloc(n);
}

} // extern "C"

// Global operator new/delete: forward to the counting malloc/free above.
// (The default ones in libstdc++ call malloc too, but replacing them keeps
// the count independent of how libstdc++ was built.)
namespace palitra_bench::detail {
inline void* new_impl(std::size_t n) {
  if (n == 0) n = 1;
  for (;;) {
    if (void* p = ::malloc(n)) return p;
    std::new_handler h = std::get_new_handler();
    if (h == nullptr) throw std::bad_alloc();
    h();
  }
}
inline void* new_aligned_impl(std::size_t n, std::align_val_t a) {
  if (n == 0) n = 1;
  for (;;) {
    if (void* p = ::memalign(static_cast<std::size_t>(a), n)) return p;
    std::new_handler h = std::get_new_handler();
    if (h == nullptr) throw std::bad_alloc();
    h();
  }
}
} // namespace palitra_bench::detail

void* operator new(std::size_t n) { return palitra_bench::detail::new_impl(n); }
void* operator new[](std::size_t n) { return palitra_bench::detail::new_impl(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return palitra_bench::detail::new_impl(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return palitra_bench::detail::new_impl(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t a) {
  return palitra_bench::detail::new_aligned_impl(n, a);
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return palitra_bench::detail::new_aligned_impl(n, a);
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return palitra_bench::detail::new_aligned_impl(n, a);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return palitra_bench::detail::new_aligned_impl(n, a);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { ::free(p); }
void operator delete[](void* p) noexcept { ::free(p); }
void operator delete(void* p, std::size_t) noexcept { ::free(p); }
void operator delete[](void* p, std::size_t) noexcept { ::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { ::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { ::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { ::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { ::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { ::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { ::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { ::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { ::free(p); }
