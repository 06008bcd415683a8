// palitra — which allocator backs coroutine frames, and why.
//
// Frames come from mimalloc, loaded at run time (never linked: DESIGN.md §1
// "Allocation"), or from the system allocator when the build asks for it,
// when a sanitizer instruments the build, or when mimalloc cannot be loaded.
// The last case costs speed and the "zero global allocations per run()"
// property, not correctness, so palitra does not fail; it reports it here
// (and with one line on stderr when PALITRA_DEBUG is set).
#pragma once

namespace palitra {

/// Where coroutine frames come from.
enum class frame_allocator_kind {
  mimalloc,           ///< mi_malloc / mi_free, plus a small per-thread cache
  system_configured,  ///< built with PALITRA_FRAME_ALLOCATOR=system
  system_sanitizer,   ///< a sanitizer instruments this build (it must see every frame)
  system_load_failed, ///< mimalloc was wanted but could not be loaded; see `reason`
};

/// The outcome of choosing the frame allocator, fixed once per process.
struct frame_allocator_info {
  frame_allocator_kind kind;
  /// One line for logs: "mimalloc", "system (configured)",
  /// "system (sanitizer build)" or "system (mimalloc could not be loaded: <why>)".
  const char* description;
  /// The library palitra loads or tried to load ("libmimalloc.so.2"), or ""
  /// when it does not try.
  const char* library;
  /// Why loading failed (the loader's message), or "".
  const char* reason;
};

/// Which allocator backs coroutine frames in this process. The first call
/// (or the first runner start, whichever comes first) makes the choice and
/// loads mimalloc; later calls return the same answer.
/// Thread: any. Blocks: the first call may wait for the dynamic loader.
/// Throws: nothing. Lifetime: the strings live until the process exits.
frame_allocator_info frame_allocator_status() noexcept;

} // namespace palitra
