// palitra — runner_core: what a runner owns (loop, thread) and its
// process-lifecycle state (fork generation).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>

#include "loop.hpp"

namespace palitra::detail {

/// Incremented in every forked child (pthread_atfork); a runner created in
/// another generation is an inherited one.
std::uint32_t fork_generation() noexcept;

class runner_core {
public:
  explicit runner_core(const runner_options& o); // starts the thread
  ~runner_core();

  bool inherited() const noexcept { return born_ != fork_generation(); }
  std::uint32_t born() const noexcept { return born_; }
  bool closed() const noexcept { return inherited() || !loop_.accepting(); }
  void close();
  /// exit() on the loop thread itself: stop accepting, do not join.
  void abandon() noexcept;

  loop loop_;

private:
  std::uint32_t born_;
  std::mutex join_mutex_; // close() only: concurrent closers wait for the join
  std::thread thread_;
  bool joined_ = false;
};

} // namespace palitra::detail
