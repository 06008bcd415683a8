// palitra — fault-injection seams for the test suites (issue: prove
// deterministic shutdown). They are compiled into every build so that the
// tested library is the shipped library; unarmed, each costs one relaxed
// load on a path that is already a function call (frame allocation, runner
// start-up). Tests include this header from core/ directly.
#pragma once

#include <atomic>

namespace palitra::detail::fault {

/// Frame allocations left before one fails with std::bad_alloc
/// (negative: never). Counts across all threads.
void fail_frame_alloc_after(long n) noexcept;
/// The next runner start-up fails as if pthread_create returned EAGAIN.
void fail_next_thread_create(bool on) noexcept;
/// Load mimalloc under `soname` instead of the configured name (a name that
/// does not exist makes the load fail). Takes effect only before the frame
/// allocator is chosen (the first runner start or frame_allocator_status());
/// returns false, and changes nothing, if it was already chosen. `soname`
/// must live as long as the process (a string literal): the status keeps it.
bool force_mimalloc_soname(const char* soname) noexcept;
/// From now on epoll_pwait2 fails with `err` (0: off), as under a seccomp
/// filter that predates it (EPERM) or on a kernel before 5.11 (ENOSYS).
/// Reactors built while it is armed see it in their probe.
void fail_epoll_pwait2(int err) noexcept;

// ---- used by the core
bool frame_alloc_should_fail() noexcept;
bool thread_create_should_fail() noexcept;
/// Called once, when the frame allocator is chosen: the forced name or
/// nullptr. Afterwards force_mimalloc_soname() returns false.
const char* take_mimalloc_soname() noexcept;
/// The errno epoll_pwait2 must fail with, or 0.
int epoll_pwait2_error() noexcept;

} // namespace palitra::detail::fault
