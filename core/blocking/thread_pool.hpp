// palitra — the blocking pool of one runner: the worker threads that run
// to_thread's callables, off the loop.
//
// Lazy and bounded: no thread, queue or allocation until the first job; a
// job starts one more thread only when no worker is idle and fewer than the
// bound run; threads stay until close() (asyncio's executor does the same),
// which joins them after the loop thread ended (blocking_job.hpp, B4).
// The work queue is moodycamel::BlockingConcurrentQueue (DESIGN.md §1): MPMC
// with a blocking dequeue. It is kept behind a pointer so that neither it nor
// its header reaches loop.hpp's includers. Who frees a job, and how its
// completion reaches the loop: blocking_job.hpp.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "blocking/blocking_job.hpp"

namespace palitra::detail {

class thread_pool {
public:
  /// `max_threads` 0: the default bound (thread_pool.cpp, default_bound()).
  thread_pool(std::size_t max_threads, const std::string& runner_name);
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  /// Loop thread (J1's enqueue). Throws palitra::error when there is no
  /// worker and none can be started; the job was not taken then.
  void submit(blocking_record& j);
  /// After the loop thread ended (runner_core::close): stop and join every
  /// worker (a callable still running is waited for), then free the
  /// detached jobs no worker picked up. Idempotent.
  void join() noexcept;
  /// Any thread: worker threads started and not yet joined (stats()).
  std::uint64_t threads() const noexcept {
    return live_.load(std::memory_order_relaxed); // a counter: publishes nothing
  }
  std::size_t bound() const noexcept { return max_; }

  struct shared; // the queue and the idle count, shared with the workers

private:
  void start_thread();

  std::size_t max_;
  std::string name_;
  std::unique_ptr<shared> shared_;   // loop thread; created by the first submit
  std::vector<std::thread> threads_; // loop thread; join() after its end
  std::atomic<std::uint64_t> live_{0};
};

/// Worker thread: the job whose callable runs on this thread now, else null.
const blocking_record* current_blocking_job() noexcept;
/// Worker thread, for this_task::cancelled(): true once the awaiter let go
/// (J3) or the awaiting chain's deadline has passed.
bool blocking_cancel_requested(const blocking_record& j) noexcept;

} // namespace palitra::detail
