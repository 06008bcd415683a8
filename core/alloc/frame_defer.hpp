// palitra — handing a frame's memory back to the thread that made it.
//
// The loop destroys a blocking call's root frame before it releases the
// caller (core/runtime/call.hpp C3), so the frame's destructors never run
// after close(). The frame's *memory*, though, was taken from the caller
// thread's frame cache, and a free on the loop thread would miss that cache
// (the caller's next frame_alloc goes to mimalloc, and the free is a
// cross-thread one: ~110 instructions per call more, measured with
// bench/callgrind.sh). So while the loop destroys such a frame, frame_free()
// parks the block in the call instead of freeing it, and the caller frees
// it into its own cache after A1. Only memory crosses back: no code of the
// call runs on the caller.
#pragma once

#include <coroutine>
#include <cstddef>

namespace palitra::detail {

/// A block parked by frame_free() while deferral is on.
struct deferred_block {
  void* p = nullptr;
  std::size_t size = 0;
};

/// Loop thread: destroy `frame`, parking its memory in `into` instead of
/// freeing it. While it runs, frame_free() on this thread parks the block it
/// is given, freeing for real the one parked before: the frame's own block
/// is the last one freed, after its locals' destructors, which may free
/// other frames.
void destroy_frame_parked(std::coroutine_handle<> frame, deferred_block& into) noexcept;

} // namespace palitra::detail
