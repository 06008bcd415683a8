// palitra — coroutine frame allocator.
//
// Why dlopen and not a link: Debian's libmimalloc.so is built with
// MI_OVERRIDE and exports malloc, free and operator new. Linking it (a
// DT_NEEDED entry) would put those in the global symbol scope and replace the
// host application's allocator, which DESIGN.md §1 forbids. Loading it with
// RTLD_LOCAL keeps every one of its symbols private to us; we only call
// mi_malloc / mi_free through pointers. If the library cannot be loaded,
// frames fall back to the system allocator (reported by
// frame_allocator_name(), so the zero-allocation test can tell).
//
// Sanitizer builds (PALITRA_FRAME_ALLOCATOR=system) use ::malloc directly:
// ASan and TSan must see each frame's allocation and free, or a reused block
// hides use-after-free (ASan) and inherits stale happens-before (TSan). For
// the same reason the per-thread cache below exists in the mimalloc build only.
//
// The per-thread cache (mimalloc build). A blocking call's frame is made and
// destroyed by the calling thread, back to back, with the same size every
// time (a coroutine's operator new and its sized operator delete see the
// same size). callgrind put mi_malloc + mi_free and their wrappers at ~155
// of the ~840 user-space instructions of a round trip (bench/README.md,
// "Profile"). So each thread keeps up to cache_slots freed blocks of at most
// cache_max_size bytes, keyed by exact size, and hands them to the next
// frame_alloc of that size. Bounded (4 x 1 KiB per thread); returned to the
// allocator when the thread exits. A block freed on another thread than the
// one that allocated it (a spawned task's frame, freed on the loop) simply
// joins that thread's cache: mimalloc frees from any thread.
//   cache state per thread: fresh -> armed (the exit flusher is registered,
//   on the first block cached) -> gone (the flusher ran: the thread is
//   exiting; later frees bypass the cache).
// Registering the flusher costs each thread one small calloc inside glibc
// (__cxa_thread_atexit_impl), once, at its first cached frame: not a
// steady-state allocation (tests/alloc counts after warm-up).
#include <cstdlib>
#include <new>
#include <utility>

#include <palitra/detail/frame_allocator.hpp>

#include "fault.hpp"

#if defined(PALITRA_FRAME_ALLOCATOR_MIMALLOC)
#  include <dlfcn.h>
#  include <mimalloc.h>
#endif

namespace palitra::detail {
namespace {

#if defined(PALITRA_FRAME_ALLOCATOR_MIMALLOC)
struct mimalloc_fns {
  decltype(&mi_malloc) alloc = nullptr;
  decltype(&mi_free) free = nullptr;
};

mimalloc_fns load_mimalloc() noexcept {
  mimalloc_fns f;
  // RTLD_LOCAL: see the file comment. Never dlclose'd: frames may outlive
  // any owner we could tie the handle to.
  void* h = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) return f;
  f.alloc = reinterpret_cast<decltype(&mi_malloc)>(dlsym(h, "mi_malloc"));
  f.free = reinterpret_cast<decltype(&mi_free)>(dlsym(h, "mi_free"));
  if (f.alloc == nullptr || f.free == nullptr) f = {};
  return f;
}

// Thread-safe lazy init; trivially destructible, so static destruction order
// cannot matter (frames may be freed by late static destructors).
const mimalloc_fns& fns() noexcept {
  static const mimalloc_fns f = load_mimalloc();
  return f;
}

void raw_free(void* p) noexcept {
  const mimalloc_fns& f = fns();
  if (f.free != nullptr)
    f.free(p);
  else
    std::free(p);
}

struct frame_cache {
  static constexpr int cache_slots = 4;
  static constexpr std::size_t cache_max_size = 1024;
  enum : unsigned char { fresh, armed, gone };
  void* block[cache_slots];
  std::size_t size[cache_slots];
  int n;
  int victim; // the slot a full cache gives up next (round robin)
  unsigned char state;
};
// Trivially destructible and constant-initialised: its storage lives until
// the thread ends, so frees from other thread_local destructors that run
// after the flusher still find it (in state `gone`).
thread_local frame_cache tl_cache{};

struct cache_flusher {
  ~cache_flusher() {
    frame_cache& c = tl_cache;
    c.state = frame_cache::gone;
    while (c.n > 0) raw_free(c.block[--c.n]);
  }
};

void arm_cache(frame_cache& c) noexcept {
  // Registers the flusher for this thread's exit. glibc allocates the
  // registration and aborts the process if it cannot (it never throws). A
  // thread that caches its first frame after its thread_local destructors
  // ran (from a pthread_key destructor, say) leaks its at most 4 blocks.
  thread_local cache_flusher flusher;
  static_cast<void>(&flusher);
  c.state = frame_cache::armed;
}
#endif

} // namespace

void* frame_alloc(std::size_t size) {
  if (fault::frame_alloc_should_fail()) throw std::bad_alloc();
#if defined(PALITRA_FRAME_ALLOCATOR_MIMALLOC)
  frame_cache& c = tl_cache;
  for (int i = c.n - 1; i >= 0; --i) {
    if (c.size[i] != size) continue;
    void* p = c.block[i];
    --c.n;
    c.block[i] = c.block[c.n];
    c.size[i] = c.size[c.n];
    return p;
  }
  const mimalloc_fns& f = fns();
  void* p = f.alloc != nullptr ? f.alloc(size) : std::malloc(size);
#else
  void* p = std::malloc(size);
#endif
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void frame_free(void* p, std::size_t size) noexcept {
#if defined(PALITRA_FRAME_ALLOCATOR_MIMALLOC)
  frame_cache& c = tl_cache;
  if (p != nullptr && size <= frame_cache::cache_max_size && c.state != frame_cache::gone) {
    if (c.state == frame_cache::fresh) arm_cache(c);
    if (c.n < frame_cache::cache_slots) {
      c.block[c.n] = p;
      c.size[c.n] = size;
      ++c.n;
      return;
    }
    // Full: the newest size replaces one in turn, so a thread that frees
    // sizes it never allocates (the loop freeing spawned frames) does not
    // keep its four slots useless for good.
    std::swap(p, c.block[c.victim]);
    c.size[c.victim] = size;
    c.victim = (c.victim + 1) % frame_cache::cache_slots;
  }
  raw_free(p);
#else
  static_cast<void>(size);
  std::free(p);
#endif
}

const char* frame_allocator_name() noexcept {
#if defined(PALITRA_FRAME_ALLOCATOR_MIMALLOC)
  return fns().alloc != nullptr ? "mimalloc" : "system";
#else
  return "system";
#endif
}

} // namespace palitra::detail
