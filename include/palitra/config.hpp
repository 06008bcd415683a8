// palitra — configuration: the one place where platform and toolchain
// detection lives. Shared code tests these macros, never compiler or OS
// macros directly (STYLE.md: "Platform #if appears in one configuration
// header").
#pragma once

#if defined(__linux__)
#  define PALITRA_LINUX 1
#elif defined(__APPLE__)
#  define PALITRA_APPLE 1
#elif defined(_WIN32)
#  define PALITRA_WINDOWS 1
#endif

// Sanitizer detection (Thread, Address, HWAddress, Memory). gcc defines __SANITIZE_*__
// and has no __has_feature; clang is the other way round. The defined() and
// __has_feature() tests must be nested or gcc 12 fails to preprocess.
#if defined(__SANITIZE_THREAD__)
#  define PALITRA_TSAN 1
#elif defined(__has_feature)
#  if __has_feature(thread_sanitizer)
#    define PALITRA_TSAN 1
#  endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#  define PALITRA_ASAN 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define PALITRA_ASAN 1
#  endif
#endif
#if defined(__SANITIZE_HWADDRESS__)
#  define PALITRA_HWASAN 1
#elif defined(__has_feature)
#  if __has_feature(hwaddress_sanitizer)
#    define PALITRA_HWASAN 1
#  endif
#endif
#if defined(__has_feature) // clang only: gcc has no MemorySanitizer
#  if __has_feature(memory_sanitizer)
#    define PALITRA_MSAN 1
#  endif
#endif
// Any sanitizer that must see every allocation and free, or every
// happens-before edge, that an uninstrumented allocator would hide.
#if defined(PALITRA_TSAN) || defined(PALITRA_ASAN) || defined(PALITRA_HWASAN) || \
    defined(PALITRA_MSAN)
#  define PALITRA_SANITIZER 1
#endif

// gcc 12 (the version measured here; earlier ones are assumed to share it,
// later ones were not measured): a closure or aggregate temporary whose
// full-expression contains a co_await is built in one place, copied byte for
// byte into the coroutine frame, and both objects are destroyed (measured
// with a probe type: one constructor, two destructors; ASan: double free of
// a captured std::string). It happens in the *awaiting* coroutine, before
// the callee runs, so no library code can repair it; to_thread.hpp rejects
// the form that reaches it instead. Clang is not affected.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ <= 12
#  define PALITRA_GCC_CO_AWAIT_TEMPORARY_BUG 1
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define PALITRA_LIKELY(x) __builtin_expect(!!(x), 1)
#  define PALITRA_UNLIKELY(x) __builtin_expect(!!(x), 0)
#  define PALITRA_NOINLINE __attribute__((noinline))
#else
#  define PALITRA_LIKELY(x) (x)
#  define PALITRA_UNLIKELY(x) (x)
#  define PALITRA_NOINLINE
#endif

// Invariant checks that are cheap enough to keep in every build: a broken
// protocol invariant must stop the process at once with a message rather
// than corrupt a caller's stack later.
#define PALITRA_ASSERT(cond, msg)                                              \
  do {                                                                         \
    if (PALITRA_UNLIKELY(!(cond)))                                             \
      ::palitra::detail::assert_fail(#cond, msg, __FILE__, __LINE__);          \
  } while (0)

namespace palitra::detail {
[[noreturn]] void assert_fail(const char* cond, const char* msg,
                              const char* file, int line) noexcept;
} // namespace palitra::detail
