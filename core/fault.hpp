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

// ---- used by the core
bool frame_alloc_should_fail() noexcept;
bool thread_create_should_fail() noexcept;

} // namespace palitra::detail::fault
