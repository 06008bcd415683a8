// palitra — what the loop reports: counters (stats()), the in-flight
// registry (in_flight_calls), unhandled errors, stalls and slow closes.
#include <cstdio>
#include <exception>
#include <vector>

#include "runtime/loop.hpp"

namespace palitra::detail {
namespace {
using clock = std::chrono::steady_clock;
} // namespace

runner_stats loop::stats() const noexcept {
  runner_stats s;
  // relaxed: counters (see bump); a snapshot balances when the loop is quiet.
  s.submitted = submitted_.load(std::memory_order_relaxed);
  s.completed = completed_.load(std::memory_order_relaxed);
  s.failed = failed_.load(std::memory_order_relaxed);
  s.cancelled = cancelled_.load(std::memory_order_relaxed);
  s.in_flight = in_flight_.load(std::memory_order_relaxed);
  s.loop_wakeups = sub_.wakeups();
  s.loop_iterations = iterations_.load(std::memory_order_relaxed);
  s.caller_wakes = caller_wakes_.load(std::memory_order_relaxed);
  s.queue_depth = queue_depth_.load(std::memory_order_relaxed);
  s.max_queue_depth = max_queue_depth_.load(std::memory_order_relaxed);
  s.start_latency_p50 = start_latency_.percentile(0.50);
  s.start_latency_p99 = start_latency_.percentile(0.99);
  s.start_latency_max = start_latency_.max();
  s.stalls = stalls_.load(std::memory_order_relaxed);
  const std::int64_t final_budget = final_caller_budget_.load(std::memory_order_relaxed);
  s.caller_spin_budget = std::chrono::nanoseconds(
      final_budget >= 0 ? final_budget
                        : hints_.get().caller_budget.load(std::memory_order_relaxed));
  s.loop_spin_budget = std::chrono::nanoseconds(loop_budget_.load(std::memory_order_relaxed));
  s.blocking_threads = pool_.threads();
  return s;
}

std::vector<call_info> loop::snapshot_calls() const {
  std::vector<call_info> out;
  const auto now = clock::now();
  for (const call_record* op = registry_; op != nullptr; op = op->reg_next_) {
    call_info c;
    c.kind = op->mode_ == call_mode::blocking ? call_info::call_kind::blocking
             : op->mode_ == call_mode::future || op->mode_ == call_mode::detached
                 ? call_info::call_kind::future
                                              : call_info::call_kind::spawned;
    c.caller = op->caller_;
    c.age = std::chrono::duration_cast<std::chrono::nanoseconds>(now - op->submitted_at_);
    c.cancelling = op->reason_ != end_reason::none || op->chain_.cancelled();
    out.push_back(c);
  }
  return out;
}

void loop::report_unhandled(std::exception_ptr e) noexcept {
  try {
    if (on_unhandled_) {
      on_unhandled_(e);
      return;
    }
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      std::fprintf(stderr, "palitra: unhandled exception in a spawned task or posted callable: %s\n",
                   x.what());
    } catch (...) {
      std::fprintf(stderr, "palitra: unhandled non-std exception in a spawned task or posted callable\n");
    }
  } catch (...) {
    // The handler itself threw: nothing sensible is left to report to.
  }
}

void loop::report_stall(std::chrono::nanoseconds d) noexcept {
  bump(stalls_);
  try {
    if (on_stall_) {
      on_stall_(d);
      return;
    }
    std::fprintf(stderr,
                 "palitra: a coroutine kept the loop busy for %.3f ms without suspending "
                 "(stall_threshold %.3f ms); move blocking work to another thread\n",
                 static_cast<double>(d.count()) / 1e6,
                 static_cast<double>(stall_threshold_.count()) / 1e6);
  } catch (...) {
    // The handler threw: nothing sensible is left to report to.
  }
}

void loop::on_slow_close(void* ctx) noexcept {
  auto& self = *static_cast<loop*>(ctx);
  if (self.registry_ == nullptr) return;
  try {
    const std::vector<call_info> calls = self.snapshot_calls();
    if (self.on_slow_close_) {
      self.on_slow_close_(calls);
      return;
    }
    std::fprintf(stderr,
                 "palitra: close() has waited %.1f s for %zu call(s) to unwind; a task that "
                 "catches cancelled_error without rethrowing keeps it waiting:\n",
                 static_cast<double>(self.close_warning_.count()) / 1e9, calls.size());
    for (const call_info& c : calls) {
      const char* kind = c.kind == call_info::call_kind::blocking ? "blocking call"
                         : c.kind == call_info::call_kind::future ? "submitted task"
                                                                  : "spawned task";
      std::fprintf(stderr, "palitra:   %s, %.3f s old\n", kind,
                   static_cast<double>(c.age.count()) / 1e9);
    }
  } catch (...) {
    // Out of memory or a throwing handler: nothing sensible is left to report to.
  }
}

} // namespace palitra::detail
