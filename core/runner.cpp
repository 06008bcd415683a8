// palitra — runner: thread start-up, close, fork, and the entry points the
// templates in runner.hpp call.
#include <pthread.h>

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>

#include <palitra/config.hpp>
#include <palitra/error.hpp>
#include <palitra/runner.hpp>

#include "fault.hpp"
#include "runner_core.hpp"

namespace palitra::detail {
namespace {

// relaxed: the child handler runs single-threaded before anything else in
// the child; parents never see it change.
std::atomic<std::uint32_t> g_fork_generation{0};

void on_fork_child() noexcept { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }

void register_fork_handler() noexcept {
  static const bool once = [] {
    pthread_atfork(nullptr, nullptr, &on_fork_child);
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
  register_fork_handler();
  try {
    if (fault::thread_create_should_fail())
      throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
    thread_ = std::thread([this, name = o.name] {
      if (!name.empty()) pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
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

void runner_core::close() {
  if (inherited()) return; // the thread is the parent's; nothing to join
  if (tl_core == this)
    throw reentrancy_error("palitra::runner::close: called on the runner's own loop thread, "
                           "which cannot join itself; call it from another thread");
  loop_.request_stop();
  std::lock_guard<std::mutex> g(join_mutex_); // L2
  if (!joined_ && !abandoned_ && thread_.joinable()) {
    thread_.join();
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

// ---- runner_core.hpp (public detail) entry points ---------------------------

void check_not_loop_thread(const wait_ref& w, const char* what) {
  if (tl_runner_id == w.runner_id) // L3: ids, never addresses
    throw reentrancy_error(std::string(what) +
                           ": called on the runner's own loop thread, which would deadlock; "
                           "co_await the task instead (or use another runner)");
}

bool on_loop_thread(const runner_core& c) noexcept { return tl_core == &c; }

bool inherited(const runner_core& c) noexcept { return c.inherited(); }

wait_ref wait_ref_of(const runner_core& c) noexcept {
  return {&c.loop_.hints(), c.born(), c.id()};
}

bool inherited(const wait_ref& w) noexcept { return w.born != fork_generation(); }

namespace {
[[noreturn]] void throw_inherited(const char* what) {
  throw runner_closed_error(std::string(what) +
                            ": this runner was inherited across fork(); create a new runner "
                            "in the child (the global runner is recreated automatically)");
}
} // namespace

void check_blocking_wait(const wait_ref& w, const char* what) {
  check_not_loop_thread(w, what);
  if (inherited(w)) throw_inherited(what);
}

std::chrono::nanoseconds caller_spin(const wait_hints& h) noexcept {
  // relaxed: a heuristic (core/loop.cpp, "wait hints").
  return std::chrono::nanoseconds(h.caller_budget.load(std::memory_order_relaxed));
}

namespace {
void submit_checked(runner_core& c, queue_node& n, const char* what) {
  if (c.inherited()) throw_inherited(what);
  if (!c.loop_.submit(n))
    throw runner_closed_error(std::string(what) +
                              ": the runner is closed or closing; create a new runner (the "
                              "global one is recreated by the next palitra::run)");
}
} // namespace

void submit_root(runner_core& c, root_op& op, const char* what) {
  submit_checked(c, op, what);
}

void submit_node(runner_core& c, queue_node& n, const char* what) { submit_checked(c, n, what); }

void request_cancel(runner_core& c, root_op& op) noexcept {
  op.chain_.request_async(); // this_task::cancelled() turns true at once
  std::uint32_t x = root_op::xc_idle;
  // acq_rel on success: we now own cancel_node_ (see root_op.hpp); failure
  // (queued: someone else cancels; closed: it ended) needs nothing.
  if (!op.xcancel_.compare_exchange_strong(x, root_op::xc_queued, std::memory_order_acq_rel,
                                           std::memory_order_relaxed))
    return;
  c.loop_.submit_always(op.cancel_node_);
}

void detach_on_loop(runner_core& c, root_op& op) noexcept { c.loop_.detach(op); }

// ---- cancel_token ---------------------------------------------------------------
//
// The op a token names is freed by its future (get() or the destructor), on
// the owner's thread, while a token may cancel from any other. The link is
// the meeting point: a token uses the op only while holding the link's mutex
// and seeing op != nullptr; the future clears op under the same mutex before
// it frees the op (unlink_token). request_cancel itself is safe once the op
// is alive: it touches the runner only after winning xc_idle -> xc_queued,
// which keeps the call (and so the runner's loop) alive until the cancel
// node is popped (root_op.hpp handshake).
struct token_link {
  std::mutex m;
  root_op* op;       // guarded by m; nullptr once the future let go
  runner_core* core; // valid while op is (see above)
  wait_ref w;
};

std::shared_ptr<token_link> make_token_link(runner_core& c, root_op& op, const wait_ref& w) {
  auto l = std::make_shared<token_link>();
  l->op = &op;
  l->core = &c;
  l->w = w;
  return l;
}

void unlink_token(token_link& l) noexcept {
  std::lock_guard<std::mutex> g(l.m);
  l.op = nullptr;
}

} // namespace palitra::detail

namespace palitra {

void cancel_token::cancel() const noexcept {
  if (!link_) return;
  detail::token_link& l = *link_;
  std::lock_guard<std::mutex> g(l.m);
  if (l.op == nullptr || l.op->slot_.is_done() || detail::inherited(l.w)) return;
  detail::request_cancel(*l.core, *l.op);
}

bool this_task::cancelled() noexcept {
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
  const detail::wait_ref w = detail::wait_ref_of(*core_);
  snapshot_request req;
  req.dispatch = &snapshot_request::run;
  if (!core_->loop_.submit(req)) return {};
  req.slot.wait(detail::caller_spin(*w.hints));
  return std::move(req.out);
}

} // namespace palitra
