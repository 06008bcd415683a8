// palitra — coroutine frame allocation.
//
// Every palitra coroutine frame (task<T>'s promise operator new) comes from
// here. In the default build the memory is mimalloc's (`mi_malloc`/`mi_free`),
// loaded privately so that the host application's malloc and operator new
// are never replaced (DESIGN.md §1 "Allocation"); sanitizer builds use the
// system allocator so ASan/TSan see every frame's lifetime. The public
// report of the choice is palitra::frame_allocator_status() (allocator.hpp).
#pragma once

#include <cstddef>

namespace palitra::detail {

/// Allocate `size` bytes for a coroutine frame.
/// Thread: any. Throws: std::bad_alloc when memory is exhausted.
void* frame_alloc(std::size_t size);

/// Free a frame from frame_alloc (on any thread).
void frame_free(void* p, std::size_t size) noexcept;

/// Make the once-per-process choice of allocator now (load mimalloc), so
/// the loader's lock and allocations are not paid by a frame. The runner
/// calls it when it starts. Thread: any. Throws: nothing.
void frame_allocator_init() noexcept;

/// Which allocator backs frames in this process: "mimalloc" or "system"
/// (see palitra::frame_allocator_status() for why).
const char* frame_allocator_name() noexcept;

} // namespace palitra::detail
