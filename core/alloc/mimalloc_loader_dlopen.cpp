// palitra — loading mimalloc with dlopen (Linux; any ELF host with libdl).
//
// RTLD_LOCAL keeps every symbol of the library private to us: Debian's
// libmimalloc.so is built with MI_OVERRIDE and exports malloc, free and
// operator new, and in the global scope they would replace the host
// application's allocator (DESIGN.md §1). RTLD_NOW: a missing symbol fails
// here, at the first runner start, not inside a later frame allocation.
// Known ways this fails, all reported through `why` (dlerror's text):
//   - the run-time package (Debian libmimalloc2.0) is missing: nothing pulls
//     it in, since no DT_NEEDED entry names it;
//   - the SONAME differs from the one found at configure time;
//   - Debian's libmimalloc.so.2.0 is flagged STATIC_TLS, so a process whose
//     static TLS surplus is used up gets "cannot allocate memory in static
//     TLS block".
#include <cstring>

#include <dlfcn.h>
#include <mimalloc.h>

#include "mimalloc_loader.hpp"

namespace palitra::detail {
namespace {

void copy_reason(const char* text, char* why, std::size_t why_size) noexcept {
  if (why_size == 0) return;
  const char* t = text != nullptr ? text : "unknown error";
  std::strncpy(why, t, why_size - 1);
  why[why_size - 1] = '\0';
}

template <class F> bool resolve(void* h, const char* name, F& out) noexcept {
  out = reinterpret_cast<F>(dlsym(h, name));
  return out != nullptr;
}

} // namespace

mimalloc_api load_mimalloc(const char* soname, char* why, std::size_t why_size) noexcept {
  mimalloc_api api;
  // Never dlclose'd: frames may outlive any owner we could tie the handle to.
  void* h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    copy_reason(dlerror(), why, why_size);
    return api;
  }
  // decltype(&mi_*) checks that the pointer types match mimalloc.h.
  decltype(&mi_malloc) a = nullptr;
  decltype(&mi_free) f = nullptr;
  decltype(&mi_usable_size) u = nullptr;
  if (!resolve(h, "mi_malloc", a) || !resolve(h, "mi_free", f) ||
      !resolve(h, "mi_usable_size", u)) {
    copy_reason(dlerror(), why, why_size);
    return api;
  }
  api.alloc = a;
  api.free = f;
  api.usable_size = u;
  return api;
}

} // namespace palitra::detail
