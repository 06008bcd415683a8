// palitra — loading mimalloc privately: the contract. One implementation per
// host, picked by CMakeLists.txt (mimalloc_loader_dlopen.cpp on Linux); the
// frame allocator (frame_allocator.cpp) only calls through these pointers.
#pragma once

#include <cstddef>

namespace palitra::detail {

/// mimalloc's entry points, all null when the library is not loaded.
struct mimalloc_api {
  void* (*alloc)(std::size_t) = nullptr;
  void (*free)(void*) = nullptr;
  std::size_t (*usable_size)(const void*) = nullptr;
};

/// Load the library named `soname` with its symbols kept private to palitra
/// (never into the global scope: Debian's build exports malloc/free), and
/// resolve the three entry points. The library is never unloaded. On failure
/// returns an empty api and writes the loader's message, cut to fit and
/// NUL-terminated, into why[0..why_size).
/// Thread: any; the caller makes it once per process. Throws: nothing.
mimalloc_api load_mimalloc(const char* soname, char* why, std::size_t why_size) noexcept;

} // namespace palitra::detail
