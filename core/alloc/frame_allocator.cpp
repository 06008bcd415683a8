// palitra — coroutine frame allocator.
//
// Why a run-time load and not a link: Debian's libmimalloc.so is built with
// MI_OVERRIDE and exports malloc, free and operator new. Linking it (a
// DT_NEEDED entry) would put those in the global symbol scope and replace the
// host application's allocator, which DESIGN.md §1 forbids. mimalloc_loader.hpp
// loads it with its symbols kept private; we only call mi_malloc / mi_free
// through pointers. The name loaded is the SONAME CMake read from the
// libmimalloc.so it found (PALITRA_MIMALLOC_SONAME).
//
// The choice is made once per process, at the first runner start
// (frame_allocator_init) or the first palitra::frame_allocator_status(),
// whichever comes first, so the loader's lock and allocations are paid
// before any steady-state run() and a failure is known early. If the library
// cannot be loaded, frames fall back to the system allocator; the reason is
// kept for frame_allocator_status() and printed on stderr under PALITRA_DEBUG.
// Only under PALITRA_DEBUG: the fallback is correct (slower, and no longer
// free of global allocations), and a library must not write to its host's
// stderr unasked (a CLI's stderr may be part of its interface); an
// application that cares asks frame_allocator_status().
//
// Sanitizer builds use ::malloc directly, whether the presets chose
// PALITRA_FRAME_ALLOCATOR=system or a consumer compiled the whole
// application with -fsanitize=... (detected at compile time, config.hpp's
// PALITRA_SANITIZER): ASan and TSan must see each frame's allocation and free,
// or a reused block hides use-after-free (ASan) and inherits stale
// happens-before from mimalloc's uninstrumented free lists (TSan). For the
// same reason the per-thread cache below exists in the mimalloc build only.
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
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include <palitra/allocator.hpp>
#include <palitra/config.hpp>
#include <palitra/detail/frame_allocator.hpp>

#include "alloc/frame_defer.hpp"
#include "diag/fault.hpp"

#if defined(PALITRA_FRAME_ALLOCATOR_MIMALLOC) && !defined(PALITRA_SANITIZER)
#  define PALITRA_FRAMES_FROM_MIMALLOC 1
#  include "mimalloc_loader.hpp"
#  if !defined(PALITRA_MIMALLOC_SONAME)
#    error "PALITRA_MIMALLOC_SONAME must name the library to load (CMakeLists.txt sets it)"
#  endif
#endif

namespace palitra::detail {
namespace {

struct allocator_choice {
  frame_allocator_info info;
#if defined(PALITRA_FRAMES_FROM_MIMALLOC)
  mimalloc_api api;
#endif
};

#if defined(PALITRA_FRAMES_FROM_MIMALLOC)
// Written once, by choose(), before the magic static below publishes it.
char g_reason[256];
char g_description[320];

bool debug_output() noexcept {
  const char* e = std::getenv("PALITRA_DEBUG");
  return e != nullptr && *e != '\0' && std::strcmp(e, "0") != 0;
}
#endif

allocator_choice choose() noexcept {
  // Taken in every build, so a forced name set too late is refused alike.
  const char* forced = fault::take_mimalloc_soname();
#if defined(PALITRA_SANITIZER)
  static_cast<void>(forced);
  return {{frame_allocator_kind::system_sanitizer, "system (sanitizer build)", "", ""}};
#elif !defined(PALITRA_FRAMES_FROM_MIMALLOC)
  static_cast<void>(forced);
  return {{frame_allocator_kind::system_configured, "system (configured)", "", ""}};
#else
  const char* soname = forced != nullptr ? forced : PALITRA_MIMALLOC_SONAME;
  allocator_choice c{{frame_allocator_kind::mimalloc, "mimalloc", soname, ""}, {}};
  c.api = load_mimalloc(soname, g_reason, sizeof g_reason);
  if (c.api.alloc != nullptr) return c;
  std::snprintf(g_description, sizeof g_description,
                "system (mimalloc could not be loaded: %s)", g_reason);
  c.info = {frame_allocator_kind::system_load_failed, g_description, soname, g_reason};
  if (debug_output())
    std::fprintf(stderr, "palitra: coroutine frames use the system allocator: %s could not be "
                         "loaded: %s\n", soname, g_reason);
  return c;
#endif
}

// Thread-safe, once; trivially destructible, so static destruction order
// cannot matter (frames may be freed by late static destructors).
const allocator_choice& chosen() noexcept {
  static const allocator_choice c = choose();
  return c;
}

#if defined(PALITRA_FRAMES_FROM_MIMALLOC)
void* raw_alloc(std::size_t size) noexcept {
  const mimalloc_api& f = chosen().api;
  return f.alloc != nullptr ? f.alloc(size) : std::malloc(size);
}

void raw_free(void* p) noexcept {
  const mimalloc_api& f = chosen().api;
  if (f.free != nullptr)
    f.free(p);
  else
    std::free(p);
}

// Review A12: the cache keys blocks by the size frame_free receives, which
// the standard says is the size operator new got; toolchains have deviated
// (capnproto PR #2522, Felspar/coro PR #22), and a mismatch would hand a
// short block to the next frame of that size. What reuse needs is exactly
// that the block holds `size` bytes, which mimalloc can tell. Debug builds
// (no NDEBUG) only: it costs a call into mimalloc per cached frame.
void check_block_size([[maybe_unused]] void* p, [[maybe_unused]] std::size_t size) noexcept {
#  if !defined(NDEBUG)
  const mimalloc_api& f = chosen().api;
  if (f.usable_size != nullptr)
    PALITRA_ASSERT(f.usable_size(p) >= size,
                   "frame_free got a larger size than the block frame_alloc returned "
                   "(sized operator delete mismatch)");
#  endif
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
#if defined(PALITRA_FRAMES_FROM_MIMALLOC)
  frame_cache& c = tl_cache;
  for (int i = c.n - 1; i >= 0; --i) {
    if (c.size[i] != size) continue;
    void* p = c.block[i];
    --c.n;
    c.block[i] = c.block[c.n];
    c.size[i] = c.size[c.n];
    return p;
  }
  void* p = raw_alloc(size);
#else
  void* p = std::malloc(size);
#endif
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

namespace {
// frame_defer.hpp: the loop's parking place while it destroys a blocking
// call's frame; nullptr on every other thread and the rest of the time.
thread_local deferred_block* tl_defer = nullptr;

void free_now(void* p, std::size_t size) noexcept {
#if defined(PALITRA_FRAMES_FROM_MIMALLOC)
  frame_cache& c = tl_cache;
  if (p != nullptr && size <= frame_cache::cache_max_size && c.state != frame_cache::gone) {
    check_block_size(p, size);
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
} // namespace

void destroy_frame_parked(std::coroutine_handle<> frame, deferred_block& into) noexcept {
  tl_defer = &into;
  frame.destroy();
  tl_defer = nullptr;
}

void frame_free(void* p, std::size_t size) noexcept {
  if (deferred_block* d = tl_defer; d != nullptr) [[unlikely]] {
    // Park this block; a block parked before (an inner frame that the
    // destroyed frame's destructors freed) is freed for real now.
    const deferred_block before = std::exchange(*d, deferred_block{p, size});
    if (before.p == nullptr) return;
    p = before.p;
    size = before.size;
  }
  free_now(p, size);
}

void frame_allocator_init() noexcept { static_cast<void>(chosen()); }

const char* frame_allocator_name() noexcept {
  return chosen().info.kind == frame_allocator_kind::mimalloc ? "mimalloc" : "system";
}

} // namespace palitra::detail

namespace palitra {

frame_allocator_info frame_allocator_status() noexcept { return detail::chosen().info; }

} // namespace palitra
