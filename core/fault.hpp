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
/// From now on epoll_pwait2 fails with `err` (0: off), as under a seccomp
/// filter that predates it (EPERM) or on a kernel before 5.11 (ENOSYS).
/// Reactors built while it is armed see it in their probe.
void fail_epoll_pwait2(int err) noexcept;

// ---- used by the core
bool frame_alloc_should_fail() noexcept;
bool thread_create_should_fail() noexcept;
/// The errno epoll_pwait2 must fail with, or 0.
int epoll_pwait2_error() noexcept;

} // namespace palitra::detail::fault
