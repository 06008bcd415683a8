// palitra — what header-only awaitables may ask of the loop they run on.
//
// All of these are loop-thread only: awaitables call them from
// await_suspend / cancellation hooks, which run on the loop thread.
#pragma once

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>

#include <palitra/detail/cancel.hpp>

namespace palitra::detail {

class loop;

/// An entry of the loop's FIFO run queue: resume `handle` with `chain` as
/// the current cancellation chain. Intrusive: it lives in the awaiter.
struct ready_item {
  ready_item* next = nullptr;
  std::coroutine_handle<> handle;
  cancel_state* chain = nullptr;
};

/// A timer: `fire(ctx)` runs on the loop thread when `deadline` has passed.
/// Intrusive: it lives in the awaiter; `heap_index` is owned by the heap.
struct timer_node {
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  std::chrono::steady_clock::time_point deadline;
  std::uint64_t seq = 0; // FIFO among equal deadlines
  std::size_t heap_index = npos;
  void (*fire)(void* ctx) noexcept = nullptr;
  void* ctx = nullptr;
  bool armed() const noexcept { return heap_index != npos; }
};

/// Any thread: the CPU this thread is running on now, plus one; 0 when the
/// platform cannot tell. A few ns on Linux (sched_getcpu reads the rseq
/// area). A hint for the cross-CPU spin (core/runtime/caller_wait.cpp), never for correctness:
/// the thread may migrate right after.
std::uint32_t current_cpu_tag() noexcept;

/// The loop running on this thread, or nullptr on any other thread.
loop* current_loop() noexcept;
/// The cancellation chain of the coroutine running on this thread.
cancel_state* current_chain() noexcept;
void set_current_chain(cancel_state* c) noexcept;

void schedule(loop& l, ready_item& item) noexcept;
/// True on a loop thread whose runner is closing.
bool loop_stopping() noexcept;
void add_timer(loop& l, timer_node& t);
void remove_timer(loop& l, timer_node& t) noexcept;

/// The loop of this thread; throws palitra::error naming `what` elsewhere.
loop& require_loop(const char* what);

/// True if `e` holds a palitra::cancelled_error.
bool is_cancellation(const std::exception_ptr& e) noexcept;
[[noreturn]] void throw_cancelled(const char* what);

} // namespace palitra::detail
