// palitra — the blocking pool (thread_pool.hpp) and the job ABI
// (include/palitra/detail/blocking.hpp). The job protocol J1-J5, B1-B4 is
// written in blocking_job.hpp; this file cites it.
#include <algorithm>
#include <string>
#include <system_error>

#include <concurrentqueue/blockingconcurrentqueue.h>

#include <palitra/config.hpp>
#include <palitra/error.hpp>

#include "blocking/thread_pool.hpp"
#include "diag/fault.hpp"
#include "platform/platform.hpp"
#include "runtime/loop.hpp"

namespace palitra::detail {

struct thread_pool::shared {
  // Jobs, and one null per worker as its stop signal at join(). Only the
  // loop thread enqueues jobs, so they leave in submission order; the stop
  // signals come from another producer and may overtake them (moodycamel
  // is FIFO per producer only, #52), hence join()'s final sweep.
  moodycamel::BlockingConcurrentQueue<blocking_record*> queue;
  // Workers waiting for a job that no submit has counted on yet. The loop
  // takes one per job (submit) and starts a thread only when none is left;
  // a worker gives one back each time it finishes a job.
  std::atomic<std::int64_t> idle{0};
};

namespace {

thread_local blocking_record* tl_job = nullptr;

/// asyncio's ThreadPoolExecutor default since Python 3.8 (bpo-35279):
/// min(32, CPUs + 4). The pool's work is blocking I/O (name resolution,
/// files, blocking client libraries): its threads mostly wait, so more of
/// them than CPUs pays off, and +4 keeps a few for I/O on small machines;
/// the cap of 32 bounds what a burst can cost (a stack each: 8 MiB of
/// address space on Linux). Python palitra users see the same concurrency.
/// Threads start only when needed, so an unused bound costs nothing.
std::size_t default_bound() noexcept {
  const unsigned cpus = std::max(1U, std::thread::hardware_concurrency());
  return std::min<std::size_t>(32, static_cast<std::size_t>(cpus) + 4);
}

void dispatch_done(queue_node* n, loop& l) noexcept {
  // J5 (loop thread): the node was popped, so the worker's J2 and its
  // stores of the outcome are visible (Q1's push / take_all's pop).
  auto& j = static_cast<blocking_record&>(*n);
  l.blocking_settled();
  if (j.done_ != nullptr)
    j.done_(j.ctx_); // keeps B3: called from the queue dispatch; it only schedules
  else
    j.ops_->destroy(j.storage()); // the awaiter was destroyed after J2 (B1)
}

void run_one(blocking_record& j, std::atomic<std::int64_t>& idle) noexcept {
  // This worker is free again as soon as the callable returned. relaxed: the
  // completion push below (Q1, release) publishes it, so a loop that saw the
  // completion sees the worker idle: back-to-back calls reuse one thread.
  auto free_again = [&idle] { idle.fetch_add(1, std::memory_order_relaxed); };
  // J4 at pickup. acquire: pairs with J1's release (the job's fields) and
  // with J3's release (the loop's last use of the job happens before we
  // destroy it).
  if (j.state_.load(std::memory_order_acquire) == job_state::detached) {
    j.ops_->destroy(j.storage()); // a cancelled job never starts
    free_again();
    return;
  }
  tl_job = &j;
  j.ops_->run(j.storage());
  tl_job = nullptr;
  free_again();
  loop* const home = j.home_; // read before J2: once the node is pushed, the loop may free j
  job_state expected = job_state::pending;
  // J2. Success relaxed: the outcome reaches the loop through the push
  // below (Q1 release, take_all acquire), never through state_. Failure
  // acquire: pairs with J3's release (the loop is done with the job before
  // we free it, J4).
  if (j.state_.compare_exchange_strong(expected, job_state::done, std::memory_order_relaxed,
                                       std::memory_order_acquire)) {
    home->submit_always(j); // G1': owed, so the loop is still there to pop it (B2)
    return;
  }
  j.ops_->destroy(j.storage()); // J4: detached while it ran; the outcome is dropped
}

void work(thread_pool::shared& s, const std::string& name) noexcept {
  platform::set_thread_name(name);
  for (;;) {
    blocking_record* j = nullptr;
    s.queue.wait_dequeue(j); // the job's fields are ours after run_one's acquire (J1)
    if (j == nullptr) return; // join()'s stop signal
    run_one(*j, s.idle);
  }
}

} // namespace

thread_pool::thread_pool(std::size_t max_threads, const std::string& runner_name)
    : max_(max_threads != 0 ? max_threads : default_bound()),
      name_((runner_name.empty() ? std::string("palitra") : runner_name) + "-blk") {}

thread_pool::~thread_pool() {
  if (!threads_.empty()) {
    // Only an inherited (forked) or abandoned runner gets here (close()
    // joins otherwise): the threads do not exist in this process or may
    // still run. Leak them and their queue, as runner_core leaks its thread.
    new std::vector<std::thread>(std::move(threads_));
    (void)shared_.release();
  }
}

void thread_pool::start_thread() {
  try {
    if (fault::thread_create_should_fail())
      throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
    threads_.reserve(threads_.size() + 1); // emplace_back cannot throw after the thread started
    threads_.emplace_back([s = shared_.get(), name = name_] { work(*s, name); });
    live_.fetch_add(1, std::memory_order_relaxed); // a counter for stats()
  } catch (const std::system_error& e) {
    if (threads_.empty())
      throw error("palitra::to_thread: cannot start a thread of the blocking pool", e.code());
    // Otherwise the job waits for a busy worker: slower, not lost.
  }
}

void thread_pool::submit(blocking_record& j) {
  if (!shared_) shared_ = std::make_unique<shared>();
  bool claimed = false;
  // relaxed: the loop is the only thread that takes from idle (workers only
  // add), so a value > 0 stays > 0 until our fetch_sub; nothing is published.
  if (shared_->idle.load(std::memory_order_relaxed) > 0) {
    shared_->idle.fetch_sub(1, std::memory_order_relaxed);
    claimed = true;
  }
  if (!claimed && threads_.size() < max_) start_thread(); // the new thread takes this job's turn
  if (!shared_->queue.enqueue(&j)) { // J1 (release); false only when out of memory
    if (claimed) shared_->idle.fetch_add(1, std::memory_order_relaxed); // as above
    throw error("palitra::to_thread: out of memory while queueing the job",
                std::make_error_code(std::errc::not_enough_memory));
  }
}

void thread_pool::join() noexcept {
  if (!shared_) return;
  for (std::size_t i = 0; i < threads_.size(); ++i)
    while (!shared_->queue.enqueue(nullptr)) platform::yield_cpu(); // out of memory: retry
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  live_.store(0, std::memory_order_relaxed); // a counter for stats()
  // Jobs a stop signal overtook: all detached, since the loop exited with no
  // completion owed (B2). Their callables never run.
  blocking_record* j = nullptr;
  while (shared_->queue.try_dequeue(j)) {
    if (j == nullptr) continue;
    // relaxed: the joins ordered the loop's J3 before this read.
    PALITRA_ASSERT(j->state_.load(std::memory_order_relaxed) == job_state::detached,
                   "a to_thread job outlived its runner's loop while still owed");
    j->ops_->destroy(j->storage());
  }
  shared_.reset();
}

const blocking_record* current_blocking_job() noexcept { return tl_job; }

bool blocking_cancel_requested(const blocking_record& j) noexcept {
  // relaxed: a flag read for its own value; the worker learns nothing else
  // from it (as cancel_state::cancelled()).
  if (j.state_.load(std::memory_order_relaxed) == job_state::detached) return true;
  return j.deadline_ != std::chrono::steady_clock::time_point::max() &&
         std::chrono::steady_clock::now() >= j.deadline_;
}

// ---- the job ABI -------------------------------------------------------------

void blocking_init(blocking_record_storage& s, const blocking_ops& ops) noexcept {
  auto* j = ::new (static_cast<void*>(s.bytes_)) blocking_record();
  j->ops_ = &ops;
  j->dispatch = &dispatch_done;
}

void blocking_submit(loop& l, blocking_record_storage& s, blocking_done_fn done, void* ctx,
                     std::chrono::steady_clock::time_point deadline) {
  blocking_record& j = blocking_record::of(s);
  j.home_ = &l;
  j.done_ = done;
  j.ctx_ = ctx;
  j.deadline_ = deadline;
  // J1, release: pairs with the worker's acquire at pickup (run_one), so the
  // callable, home_ and deadline_ are published by an edge of our own. The
  // enqueue publishes them too, but moodycamel's block reuse rests on
  // fences that ThreadSanitizer does not model (cmake/tsan-ignorelist.txt),
  // and this pair keeps the handoff checkable without trusting it.
  j.state_.store(job_state::pending, std::memory_order_release);
  try {
    l.blocking_pool().submit(j);
  } catch (...) {
    j.state_.store(job_state::idle, std::memory_order_relaxed); // never left this thread
    throw;
  }
  l.blocking_started(); // one completion owed (B2)
}

bool blocking_cancel(blocking_record_storage& s) noexcept {
  blocking_record& j = blocking_record::of(s);
  loop* const home = j.home_; // read before J3: after it the worker may free j
  job_state expected = job_state::pending;
  // J3. Success release: our last use of the job happens before the
  // worker's free (its acquire at pickup or at J2's failure). Failure
  // relaxed: done, and the outcome comes with the completion node (Q1).
  if (j.state_.compare_exchange_strong(expected, job_state::detached, std::memory_order_release,
                                       std::memory_order_relaxed)) {
    home->blocking_settled();
    return true;
  }
  return false;
}

void blocking_destroy(blocking_record_storage& s) noexcept {
  blocking_record::of(s).ops_->destroy(s);
}

void blocking_abandon(blocking_record_storage& s) noexcept {
  if (blocking_cancel(s)) return;          // J3: the worker frees it
  blocking_record::of(s).done_ = nullptr;  // done: J5 frees it (loop-owned field)
}

} // namespace palitra::detail
