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
// hides use-after-free (ASan) and inherits stale happens-before (TSan).
#include <cstdlib>
#include <new>

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
#endif

} // namespace

void* frame_alloc(std::size_t size) {
  if (fault::frame_alloc_should_fail()) throw std::bad_alloc();
#if defined(PALITRA_FRAME_ALLOCATOR_MIMALLOC)
  const mimalloc_fns& f = fns();
  void* p = f.alloc != nullptr ? f.alloc(size) : std::malloc(size);
#else
  void* p = std::malloc(size);
#endif
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void frame_free(void* p, std::size_t) noexcept {
#if defined(PALITRA_FRAME_ALLOCATOR_MIMALLOC)
  const mimalloc_fns& f = fns();
  if (f.free != nullptr) {
    f.free(p);
    return;
  }
#endif
  std::free(p);
}

const char* frame_allocator_name() noexcept {
#if defined(PALITRA_FRAME_ALLOCATOR_MIMALLOC)
  return fns().alloc != nullptr ? "mimalloc" : "system";
#else
  return "system";
#endif
}

} // namespace palitra::detail
