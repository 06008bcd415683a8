// palitra — runner: thread start-up, close, fork, and the entry points the
// templates in runner.hpp call.
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>

#include <palitra/config.hpp>
#include <palitra/error.hpp>
#include <palitra/runner.hpp>

#include "diag/fault.hpp"
#include "platform/platform.hpp"
#include "runtime/runner_core.hpp"

namespace palitra::detail {
namespace {

// relaxed: the child handler runs single-threaded before anything else in
// the child; parents never see it change.
std::atomic<std::uint32_t> g_fork_generation{0};

void count_fork_child() noexcept { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }

void register_fork_handler() noexcept {
  static const bool once = [] {
    platform::on_fork_child(&count_fork_child);
    return true;
  }();
  (void)once;
}

thread_local const runner_core* tl_core = nullptr;
// The id of the runner whose loop runs on this thread, 0 elsewhere (L3).
thread_local std::uint64_t tl_runner_id = 0;

// relaxed: ids need only be unique, not ordered with anything.
std::atomic<std::uint64_t> g_next_runner_id{1};

} // namespace

std::uint32_t fork_generation() noexcept {
  return g_fork_generation.load(std::memory_order_relaxed); // see g_fork_generation
}

runner_core::runner_core(const runner_options& o)
    : loop_(o), born_(fork_generation()),
      id_(g_next_runner_id.fetch_add(1, std::memory_order_relaxed)) { // relaxed: see g_next_runner_id
  frame_allocator_init(); // A10: choose the frame allocator before the first frame
  register_fork_handler();
  try {
    if (fault::thread_create_should_fail())
      throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
    thread_ = std::thread([this, name = o.name] {
      if (!name.empty()) platform::set_thread_name(name);
      tl_core = this;
      tl_runner_id = id_;
      // release: the constructor's acquire wait sees tl_core set and the
      // loop about to run.
      started_.store(1, std::memory_order_release);
      started_.notify_one(); // keeps L1: started_ outlives this call
      loop_.run(born_);
      tl_core = nullptr;
      tl_runner_id = 0;
    });
  } catch (const std::system_error& e) {
    throw error("palitra::runner: cannot start the loop thread", e.code());
  }
  // acquire: pairs with the thread's release store above.
  while (started_.load(std::memory_order_acquire) == 0) started_.wait(0, std::memory_order_acquire);
}

runner_core::~runner_core() {
  if (thread_.joinable()) {
    // Only an inherited (forked) or abandoned runner gets here: its thread
    // does not exist in this process or cannot be joined. Leak the handle
    // rather than let std::thread's destructor terminate the process.
    new std::thread(std::move(thread_));
  }
}

void runner_core::close(std::int64_t grace_until) {
  if (inherited()) return; // the thread is the parent's; nothing to join
  if (tl_core == this)
    throw reentrancy_error("palitra::runner::close: called on the runner's own loop thread, "
                           "which cannot join itself; call it from another thread");
  loop::grace_notice notice; // L4: popped before the join below returns
  loop_.request_stop(grace_until, notice);
  std::lock_guard<std::mutex> g(join_mutex_); // L2
  if (!joined_ && !abandoned_ && thread_.joinable()) {
    thread_.join();
    loop_.blocking_pool().join(); // B4: a callable still running is waited for
    loop_.close_handles();
    joined_ = true;
  }
}

void runner_core::abandon() noexcept {
  loop_.request_stop();
  std::lock_guard<std::mutex> g(join_mutex_); // L2
  abandoned_ = true; // never join: the caller is the loop thread, inside exit()
}

void runner_internals::abandon(runner& r) noexcept { r.core_->abandon(); }

bool on_loop_thread(const runner_core& c) noexcept { return tl_core == &c; }
std::uint64_t current_runner_id() noexcept { return tl_runner_id; }

} // namespace palitra::detail

namespace palitra {

bool this_task::cancelled() noexcept {
  // On a to_thread worker: the awaiting task's cancellation (blocking_job.hpp
  // J3), or its deadline.
  if (const detail::blocking_record* j = detail::current_blocking_job())
    return detail::blocking_cancel_requested(*j);
  const detail::cancel_state* c = detail::current_chain();
  // A timeout or close() cannot be delivered while CPU-bound code holds the
  // loop, so their conditions are read directly here.
  return c != nullptr && (c->cancelled_or_expired() || detail::loop_stopping());
}

runner::runner() : runner(runner_options{}) {}

namespace {
detail::runner_core* make_core(const runner_options& o) {
  try {
    return new detail::runner_core(o);
  } catch (const std::bad_alloc&) {
    throw error("palitra::runner: out of memory while starting the runner",
                std::make_error_code(std::errc::not_enough_memory));
  }
}
} // namespace

runner::runner(runner_options options) : core_(make_core(options)) {}

runner::~runner() {
  PALITRA_ASSERT(!detail::on_loop_thread(*core_),
                 "a runner was destroyed on its own loop thread; it cannot join itself");
  core_->close();
  delete core_;
}

void runner::close() { core_->close(); }

void runner::close_until(std::chrono::steady_clock::time_point grace_end) {
  core_->close(static_cast<std::int64_t>(grace_end.time_since_epoch().count()));
}

bool runner::closed() const noexcept { return core_->closed(); }

bool runner::on_loop_thread() const noexcept { return detail::on_loop_thread(*core_); }

runner_stats runner::stats() const { return core_->loop_.stats(); }

namespace {
// A request for the loop's registry: a queue node on the asking thread's
// stack, answered through a completion slot (the same P1/A1 protocol as a
// call).
struct snapshot_request final : detail::queue_node {
  std::vector<call_info> out;
  detail::completion_slot slot;
  static void run(detail::queue_node* n, detail::loop& l) noexcept {
    auto* self = static_cast<snapshot_request*>(n);
    try {
      self->out = l.snapshot_calls();
    } catch (...) {
      // Out of memory while listing: answer with what we have (nothing).
    }
    self->slot.publish();
  }
};
} // namespace

std::vector<call_info> runner::in_flight_calls() const {
  if (detail::on_loop_thread(*core_)) return core_->loop_.snapshot_calls();
  if (core_->inherited()) return {};
  // Taken before the push: once the request is answered, close() then
  // ~runner may destroy this runner while we still wait (the wait reads
  // only req and the hint block, which outlives every runner).
  const detail::wait_ref w = detail::call_wait_ref(*core_);
  snapshot_request req;
  req.dispatch = &snapshot_request::run;
  if (!core_->loop_.submit(req)) return {};
  req.slot.wait(detail::caller_spin(*w.hints)); // reads req and the hint block only
  return std::move(req.out);
}

} // namespace palitra
