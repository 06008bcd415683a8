// palitra — the operating-system layer that shared code may use: one
// contract here, one implementation file per host (platform_linux.cpp),
// picked by CMakeLists.txt. Shared code (loop, runner, global runner) calls
// only these; no platform #if outside this folder, the wait backends
// (core/wait/address_wait_<os>.cpp), the reactor backends and the
// allocator's loader (core/alloc/mimalloc_loader_<how>.cpp).
#pragma once

#include <cstdint>
#include <string_view>

namespace palitra::detail::platform {

/// Name the calling thread (debuggers, top -H). The kernel may keep only a
/// prefix (Linux: 15 bytes). Best effort: failure is ignored.
void set_thread_name(std::string_view name) noexcept;

/// The CPU the calling thread runs on now, plus one; 0 when the host cannot
/// tell cheaply. A hint for the cross-CPU spin, never for correctness: the
/// thread may migrate right after. A few ns on Linux (sched_getcpu reads the
/// rseq area).
std::uint32_t cpu_tag() noexcept;

/// Give the CPU to another runnable thread (sched_yield / SwitchToThread).
void yield_cpu() noexcept;

/// Run `fn` in the child of every fork() (pthread_atfork). A no-op on hosts
/// without fork(). Each distinct `fn` should be registered once.
void on_fork_child(void (*fn)()) noexcept;

/// Write `msg` to the standard error stream and end the process at once,
/// with EXIT_FAILURE and without exit handlers or static destructors.
/// Async-signal-safe (usable in a forked child of a multi-threaded parent).
[[noreturn]] void exit_now(std::string_view msg) noexcept;

} // namespace palitra::detail::platform
