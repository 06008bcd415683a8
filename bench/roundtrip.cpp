// palitra bench — round trip: a synchronous caller hands a trivial job (it
// returns the int 1) to one server thread and blocks until the result is back.
//
// What it exercises, side by side in one run with one harness:
//   palitra      r.run(task) on an explicit palitra::runner (default options):
//                MPSC push, wake elision, loop pass, completion slot.
//   asio         asio::co_spawn(ctx, awaitable, asio::use_future).get(); one
//                thread runs an io_context kept alive by a work guard.
//   mutex_cv     a std::mutex + std::condition_variable job queue (std::deque)
//                served by one thread; the caller waits on a std::future from
//                a std::promise. The naive baseline.
//   futex_floor  a futex ping-pong between two threads: the caller stores the
//                request, FUTEX_WAKE, FUTEX_WAIT; the server does the same
//                back. Both sleep every time: the cost of one blocking hand-off
//                each way, which any design that lets its threads sleep pays.
//                One caller only (it is a pair, not a queue).
// Metrics, per system and round:
//   latency      one caller, back-to-back calls (the loop is otherwise idle):
//                warm-up, then --calls calls each timed with steady_clock
//                (≈ 25 ns per clock read, included); p50, p99, mean.
//   throughput   N = 1, 2, 4, 8, 16, 32, 64 caller threads; --tput-calls calls per N,
//                split evenly (each thread does tput_calls / N); the clock runs
//                from releasing a start latch until every thread is joined.
//   sparse       one caller pauses 300 µs before each of --sparse-calls timed
//                calls, longer than palitra's 50 µs spin phases, so the server
//                is asleep every time: the cost of waking it.
//   allocations  malloc-family calls of the whole process ÷ calls, counted in
//                separate untimed passes with 1 and 16 callers (alloc_count.hpp).
//   CPU          process user+sys time (getrusage) over the sparse run and the
//                1- and 16-thread throughput runs ÷ calls: what spinning or
//                yielding costs (the sparse figure includes the caller's
//                nanosleep, the same for every system).
//   palitra only runner.stats() deltas per call: loop_wakeups (wake-fd
//                writes) over the latency run (1t), the sparse run and the
//                16-thread throughput run (16t); loop_iterations over 1t, 16t.
// Rounds: every round runs every system once (the starting system rotates);
// tables show the median over rounds, ratios are taken within a round and
// then the median is shown. The VM this was written on time-slices its two
// vCPUs like one core, so single rounds swing; see bench/README.md.
// Scaling: the work is rounds × systems × (1.1 × calls + 7 × tput_calls + 2 ×
// alloc_calls + sparse_calls) round trips (3-5 µs each on one vCPU, asio
// ~13 µs, ~50 µs in a round where the scheduler splits caller and server over
// the two vCPUs) plus sparse_calls × 300 µs of pauses: the defaults (5 rounds)
// take 1-2 minutes here; --quick takes a few seconds.
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/futex.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <functional>
#include <future>
#include <latch>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>
#include <asio/version.hpp>

#include <palitra/detail/frame_allocator.hpp>
#include <palitra/palitra.hpp>

#include "alloc_count.hpp"
#include "bench_util.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using palitra_bench::nan_v;
constexpr std::array<int, 7> thread_counts{1, 2, 4, 8, 16, 32, 64};
constexpr int alloc_threads = 16;   // the "under load" allocation pass
constexpr std::size_t wake_tput_index = 4; // thread_counts[4] == 16

// ---------------------------------------------------------------------------
// The four systems. Each: constructed per round, int call() from any thread
// (futex_floor: one thread), destroyed at the end of the round.
// ---------------------------------------------------------------------------

palitra::task<int> palitra_job() { co_return 1; }

class palitra_system {
public:
  int call() { return runner_.run(palitra_job()); }
  palitra::runner_stats stats() const { return runner_.stats(); }

private:
  palitra::runner runner_;
};

asio::awaitable<int> asio_job() { co_return 1; }

class asio_system {
public:
  asio_system() : guard_(asio::make_work_guard(ctx_)), thread_([this] { ctx_.run(); }) {}
  ~asio_system() {
    guard_.reset();
    thread_.join();
  }
  int call() { return asio::co_spawn(ctx_, asio_job(), asio::use_future).get(); }

private:
  asio::io_context ctx_; // default concurrency hint, as a user would write it
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::thread thread_;
};

int plain_job() noexcept { return 1; }

class mutex_cv_system {
public:
  mutex_cv_system() : thread_([this] { serve(); }) {}
  ~mutex_cv_system() {
    {
      std::lock_guard<std::mutex> g(mutex_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  int call() {
    job j{&plain_job, {}};
    std::future<int> f = j.promise.get_future();
    {
      std::lock_guard<std::mutex> g(mutex_);
      queue_.push_back(&j);
    }
    cv_.notify_one();
    return f.get();
  }

private:
  struct job {
    int (*fn)() noexcept;
    std::promise<int> promise;
  };
  void serve() {
    for (;;) {
      std::unique_lock<std::mutex> lk(mutex_);
      cv_.wait(lk, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return; // stop_ and drained
      job* j = queue_.front();
      queue_.pop_front();
      lk.unlock();
      // Move the promise out first: once set_value makes the future ready the
      // caller may return and destroy *j while set_value is still unwinding.
      std::promise<int> p = std::move(j->promise);
      p.set_value(j->fn());
    }
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<job*> queue_;
  bool stop_ = false;
  std::thread thread_;
};

static_assert(sizeof(std::atomic<std::uint32_t>) == 4 &&
              std::atomic<std::uint32_t>::is_always_lock_free);

long futex(std::atomic<std::uint32_t>& word, int op, std::uint32_t val) noexcept {
  // The futex key is the word's address; std::atomic<uint32_t> is a plain
  // 4-byte integer here (static_assert above).
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), op, val, nullptr, nullptr,
                 0);
}

class futex_floor_system {
public:
  futex_floor_system() : thread_([this] { serve(); }) {}
  ~futex_floor_system() {
    request_.store(stop_seq, std::memory_order_release);
    futex(request_, FUTEX_WAKE_PRIVATE, 1);
    thread_.join();
  }
  /// One caller at a time (a ping-pong pair).
  int call() noexcept {
    const std::uint32_t s = ++seq_;
    // release: the request word is the whole message; pairs with serve()'s acquire.
    request_.store(s, std::memory_order_release);
    futex(request_, FUTEX_WAKE_PRIVATE, 1); // unconditional: both sides always sleep
    // acquire: pairs with serve()'s release store of reply_, publishing result_.
    while (reply_.load(std::memory_order_acquire) != s)
      futex(reply_, FUTEX_WAIT_PRIVATE, s - 1); // returns at once if reply_ moved on
    return result_;
  }

private:
  static constexpr std::uint32_t stop_seq = 0xffffffffU;
  void serve() noexcept {
    std::uint32_t last = 0;
    for (;;) {
      std::uint32_t r;
      // acquire: pairs with call()'s release store of request_.
      while ((r = request_.load(std::memory_order_acquire)) == last)
        futex(request_, FUTEX_WAIT_PRIVATE, last);
      if (r == stop_seq) return;
      last = r;
      result_ = plain_job();
      reply_.store(r, std::memory_order_release); // publishes result_ to call()'s acquire
      futex(reply_, FUTEX_WAKE_PRIVATE, 1);
    }
  }
  alignas(64) std::atomic<std::uint32_t> request_{0};
  alignas(64) std::atomic<std::uint32_t> reply_{0};
  int result_ = 0;
  std::uint32_t seq_ = 0; // caller-owned
  std::thread thread_;
};

/// The yield-then-sleep bridge (research/peer-benchmarks.md,
/// floors/mpsc_yieldpark): what a careful hand-rolled bridge without
/// coroutines looks like. The request lives on the caller's stack and is
/// pushed onto a Treiber stack; the caller writes the server's futex only when
/// the server announced its sleep; both sides then sched_yield for up to
/// bridge_spin before they sleep on a futex. The reference palitra must beat
/// under load (issue #4: 1.25x at 16 and 64 callers).
class bridge_system {
public:
  bridge_system() : thread_([this] { serve(); }) {}
  ~bridge_system() {
    // seq_cst: the store half of a Dekker pair with serve()'s sleep check.
    stop_.store(true, std::memory_order_seq_cst);
    wake_server();
    thread_.join();
  }
  int call() noexcept {
    request r;
    request* h = head_.load(std::memory_order_relaxed);
    do {
      r.next = h;
      // seq_cst: publishes r to serve()'s acquire exchange, and is the store
      // half of the Dekker pair with the server's sleep announcement.
    } while (!head_.compare_exchange_weak(h, &r, std::memory_order_seq_cst,
                                          std::memory_order_relaxed));
    wake_server();
    const auto until = clock_type::now() + bridge_spin;
    // acquire: pairs with the server's release exchange; publishes result.
    while (r.state.load(std::memory_order_acquire) != done) {
      if (clock_type::now() < until) {
        sched_yield();
        continue;
      }
      std::uint32_t e = pending;
      r.state.compare_exchange_strong(e, waiting, std::memory_order_relaxed);
      while (r.state.load(std::memory_order_acquire) != done) futex(r.state, FUTEX_WAIT_PRIVATE, waiting);
    }
    return r.result;
  }

private:
  static constexpr std::uint32_t pending = 0, done = 1, waiting = 2;
  static constexpr auto bridge_spin = std::chrono::microseconds(20);
  struct request {
    request* next = nullptr;
    int result = 0;
    std::atomic<std::uint32_t> state{pending};
  };
  void wake_server() noexcept {
    // seq_cst load/exchange: the load half of the Dekker pairs (see serve()).
    if (sleeping_.load(std::memory_order_seq_cst) == 1 &&
        sleeping_.exchange(0, std::memory_order_seq_cst) == 1)
      futex(sleeping_, FUTEX_WAKE_PRIVATE, 1);
  }
  bool idle() const noexcept {
    return head_.load(std::memory_order_relaxed) == nullptr &&
           !stop_.load(std::memory_order_relaxed);
  }
  void serve() noexcept {
    for (;;) {
      // acquire: pairs with call()'s seq_cst push.
      request* h = head_.exchange(nullptr, std::memory_order_acquire);
      request* fifo = nullptr;
      while (h != nullptr) {
        request* n = h->next;
        h->next = fifo;
        fifo = h;
        h = n;
      }
      if (fifo != nullptr) {
        while (fifo != nullptr) {
          request* n = fifo->next; // read first: the caller may return at once
          fifo->result = plain_job();
          std::atomic<std::uint32_t>& st = fifo->state;
          // release: publishes result to call()'s acquire load.
          if (st.exchange(done, std::memory_order_release) == waiting)
            futex(st, FUTEX_WAKE_PRIVATE, 1); // address only: r may be gone
          fifo = n;
        }
        continue;
      }
      if (stop_.load(std::memory_order_seq_cst)) return;
      const auto until = clock_type::now() + bridge_spin;
      while (idle() && clock_type::now() < until) sched_yield();
      if (!idle()) continue;
      // Announce the sleep, then re-check (seq_cst: Dekker pairs with the
      // push / stop_ store followed by wake_server()'s load).
      sleeping_.store(1, std::memory_order_seq_cst);
      if (head_.load(std::memory_order_seq_cst) != nullptr ||
          stop_.load(std::memory_order_seq_cst)) {
        sleeping_.store(0, std::memory_order_relaxed);
        continue;
      }
      while (sleeping_.load(std::memory_order_acquire) == 1) futex(sleeping_, FUTEX_WAIT_PRIVATE, 1);
    }
  }
  alignas(64) std::atomic<request*> head_{nullptr};
  alignas(64) std::atomic<std::uint32_t> sleeping_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

/// The context-switch bound: call() is one sched_yield while one server
/// thread does nothing but sched_yield. Every design in which a blocked caller
/// gives its CPU away pays at least one voluntary context switch per call
/// when callers and server share a CPU (`taskset -c 0`), so this row's calls/s
/// is an upper bound for palitra, the bridge and every peer on one CPU, and
/// its p50 (switch to the server and back) the bound for one caller. No job
/// runs and nothing is handed over: it is a bound, not a bridge.
class switch_bound_system {
public:
  switch_bound_system() : thread_([this] {
    while (!stop_.load(std::memory_order_relaxed)) sched_yield(); // relaxed: a flag, no data
  }) {}
  ~switch_bound_system() {
    stop_.store(true, std::memory_order_relaxed);
    thread_.join();
  }
  int call() noexcept {
    sched_yield();
    return 1;
  }

private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

struct config {
  int rounds = 5;
  std::size_t calls = 20000;       // timed latency calls per round
  std::size_t warmup = 2000;       // untimed calls before them
  std::size_t tput_calls = 40000;  // per thread count, split over the threads
  std::size_t alloc_calls = 4000;  // per allocation pass
  std::size_t sparse_calls = 2000; // timed calls with a pause before each
  std::string csv;
  std::string only; // --systems: comma-separated keys; empty = all
  bool child = false; // --child: the ablation binary measuring one round for its parent
};

/// One system in one round. NaN = not measured.
struct sample {
  double p50 = nan_v, p99 = nan_v, mean = nan_v; // µs
  std::array<double, thread_counts.size()> tput{nan_v, nan_v, nan_v, nan_v, nan_v, nan_v, nan_v}; // calls/s
  double allocs_1t = nan_v, allocs_16t = nan_v;
  double wakeups_1t = nan_v, wakeups_16t = nan_v; // palitra: wake-fd writes per call
  double iters_1t = nan_v, iters_16t = nan_v;     // palitra: loop passes per call
  double sparse_p50 = nan_v, sparse_p99 = nan_v;  // µs, server asleep at each call
  double wakeups_sparse = nan_v;                  // palitra
  double cpu_1t = nan_v, cpu_16t = nan_v;         // process CPU µs per call (user+sys)
  double cpu_sparse = nan_v;                      // the same over the sparse run
  double csw_1t = nan_v, csw_16t = nan_v;         // context switches per call, all threads
  double cwakes_16t = nan_v;                      // palitra: futex wakes of sleeping callers per call
};

/// The pause before each sparse call: longer than palitra's default
/// caller_spin and loop_spin (50 µs each), so every sparse call finds the
/// server asleep and pays its wake-up.
constexpr auto sparse_gap = std::chrono::microseconds(300);

/// Context switches of the whole process so far, every thread (ended ones
/// included), voluntary and involuntary: a sched_yield that hands the CPU
/// over counts as involuntary, a futex sleep as voluntary.
double process_switches() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_nvcsw + u.ru_nivcsw);
}

double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

void check_sum(std::uint64_t got, std::uint64_t calls, const char* system, const char* what) {
  if (got != calls) {
    std::fprintf(stderr, "palitra_bench: %s %s: results sum to %llu over %llu calls\n", system,
                 what, static_cast<unsigned long long>(got),
                 static_cast<unsigned long long>(calls));
    std::exit(2);
  }
}

/// Nearest-rank percentile of sorted nanoseconds, in µs.
double percentile_us(const std::vector<std::int64_t>& sorted, double q) {
  const std::size_t i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return static_cast<double>(sorted[std::min(sorted.size() - 1, i == 0 ? 0 : i - 1)]) / 1000.0;
}

template <class S> void latency(S& s, const config& c, std::vector<std::int64_t>& ns, sample& out,
                                const char* name) {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < c.warmup; ++i) sum += static_cast<std::uint64_t>(s.call());
  check_sum(sum, c.warmup, name, "warm-up");
  ns.resize(c.calls);
  sum = 0;
  for (std::size_t i = 0; i < c.calls; ++i) {
    const auto t0 = clock_type::now();
    sum += static_cast<std::uint64_t>(s.call());
    const auto t1 = clock_type::now();
    ns[i] = std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
  }
  check_sum(sum, c.calls, name, "latency");
  double total = 0;
  for (auto v : ns) total += static_cast<double>(v);
  std::sort(ns.begin(), ns.end());
  out.p50 = percentile_us(ns, 0.50);
  out.p99 = percentile_us(ns, 0.99);
  out.mean = total / static_cast<double>(ns.size()) / 1000.0;
}

/// One caller, a sparse_gap pause before each timed call (p50, p99).
template <class S> void latency_sparse(S& s, const config& c, std::vector<std::int64_t>& ns,
                                       sample& out, const char* name) {
  ns.resize(c.sparse_calls);
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < c.sparse_calls; ++i) {
    std::this_thread::sleep_for(sparse_gap);
    const auto t0 = clock_type::now();
    sum += static_cast<std::uint64_t>(s.call());
    const auto t1 = clock_type::now();
    ns[i] = std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
  }
  check_sum(sum, c.sparse_calls, name, "sparse latency");
  std::sort(ns.begin(), ns.end());
  out.sparse_p50 = percentile_us(ns, 0.50);
  out.sparse_p99 = percentile_us(ns, 0.99);
}

/// calls/s with `threads` callers doing `per_thread` calls each.
template <class S> double throughput(S& s, int threads, std::size_t per_thread, const char* name) {
  std::latch ready(threads), go(1);
  std::atomic<std::uint64_t> sum{0};
  std::vector<std::thread> ts;
  ts.reserve(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      ready.count_down();
      go.wait();
      std::uint64_t local = 0;
      for (std::size_t i = 0; i < per_thread; ++i) local += static_cast<std::uint64_t>(s.call());
      sum.fetch_add(local, std::memory_order_relaxed); // read after join
    });
  ready.wait();
  const auto t0 = clock_type::now();
  go.count_down();
  for (auto& t : ts) t.join();
  const auto t1 = clock_type::now();
  const std::uint64_t calls = static_cast<std::uint64_t>(threads) * per_thread;
  check_sum(sum.load(std::memory_order_relaxed), calls, name, "throughput");
  return static_cast<double>(calls) / std::chrono::duration<double>(t1 - t0).count();
}

/// Allocation calls per round trip with `threads` callers (untimed pass).
template <class S> double allocs_per_call(S& s, int threads, std::size_t calls, const char* name) {
  const std::size_t per_thread = std::max<std::size_t>(1, calls / static_cast<std::size_t>(threads));
  std::latch ready(threads), go(1), done(threads);
  std::atomic<std::uint64_t> sum{0};
  std::vector<std::thread> ts;
  ts.reserve(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      std::uint64_t local = static_cast<std::uint64_t>(s.call()); // per-thread first-use setup
      ready.count_down();
      go.wait();
      for (std::size_t i = 0; i < per_thread; ++i) local += static_cast<std::uint64_t>(s.call());
      sum.fetch_add(local, std::memory_order_relaxed);
      done.count_down(); // release: this thread's calls happen before stop()
    });
  ready.wait();
  palitra_bench::alloc_window w; // thread creation and exit stay outside
  go.count_down();
  done.wait();
  const std::uint64_t n = w.stop();
  for (auto& t : ts) t.join();
  const std::uint64_t calls_done = static_cast<std::uint64_t>(threads) * per_thread;
  check_sum(sum.load(std::memory_order_relaxed), calls_done + static_cast<std::uint64_t>(threads),
            name, "allocations");
  return static_cast<double>(n) / static_cast<double>(calls_done);
}

template <class S> constexpr bool has_stats = requires(const S& s) { s.stats(); };

/// One round of one system: latency, allocations, throughput.
template <class S> sample measure(const config& c, bool multi_caller, const char* name,
                                  std::vector<std::int64_t>& ns) {
  sample out;
  auto s = std::make_unique<S>();
  palitra::runner_stats before{};
  if constexpr (has_stats<S>) before = s->stats();
  latency(*s, c, ns, out, name);
  if constexpr (has_stats<S>) {
    const auto after = s->stats();
    const double n = static_cast<double>(c.warmup + c.calls);
    out.wakeups_1t = static_cast<double>(after.loop_wakeups - before.loop_wakeups) / n;
    out.iters_1t = static_cast<double>(after.loop_iterations - before.loop_iterations) / n;
  }
  if constexpr (has_stats<S>) before = s->stats();
  const double sparse_cpu0 = process_cpu_seconds();
  latency_sparse(*s, c, ns, out, name);
  out.cpu_sparse = (process_cpu_seconds() - sparse_cpu0) * 1e6 / static_cast<double>(c.sparse_calls);
  if constexpr (has_stats<S>)
    out.wakeups_sparse = static_cast<double>(s->stats().loop_wakeups - before.loop_wakeups) /
                         static_cast<double>(c.sparse_calls);
  out.allocs_1t = allocs_per_call(*s, 1, c.alloc_calls, name);
  for (std::size_t k = 0; k < thread_counts.size(); ++k) {
    const int n = thread_counts[k];
    if (n > 1 && !multi_caller) continue;
    const std::size_t per = std::max<std::size_t>(1, c.tput_calls / static_cast<std::size_t>(n));
    if constexpr (has_stats<S>) before = s->stats();
    const double cpu0 = process_cpu_seconds();
    const double csw0 = process_switches();
    out.tput[k] = throughput(*s, n, per, name);
    const double calls_done = static_cast<double>(per) * n;
    const double cpu_per_call = (process_cpu_seconds() - cpu0) * 1e6 / calls_done;
    // Includes the 2n switches of starting and joining the callers: < 0.01 per call.
    const double csw_per_call = (process_switches() - csw0) / calls_done;
    if (k == 0) out.cpu_1t = cpu_per_call, out.csw_1t = csw_per_call;
    if (k == wake_tput_index) out.cpu_16t = cpu_per_call, out.csw_16t = csw_per_call;
    if constexpr (has_stats<S>) {
      if (k == wake_tput_index) {
        const auto after = s->stats();
        const double calls = static_cast<double>(per) * n;
        out.wakeups_16t = static_cast<double>(after.loop_wakeups - before.loop_wakeups) / calls;
        out.iters_16t =
            static_cast<double>(after.loop_iterations - before.loop_iterations) / calls;
        out.cwakes_16t = static_cast<double>(after.caller_wakes - before.caller_wakes) / calls;
      }
    }
  }
  if (multi_caller) out.allocs_16t = allocs_per_call(*s, alloc_threads, c.alloc_calls, name);
  if constexpr (has_stats<S>) {
    // Counters balance whenever the loop is quiescent (DESIGN.md §2): every
    // call returned, so nothing may be in flight.
    const auto st = s->stats();
    if (st.in_flight != 0 || st.submitted != st.completed + st.failed + st.cancelled) {
      std::fprintf(stderr,
                   "palitra_bench: %s: counters do not balance after the round: submitted %llu "
                   "completed %llu failed %llu cancelled %llu in_flight %llu\n",
                   name, static_cast<unsigned long long>(st.submitted),
                   static_cast<unsigned long long>(st.completed),
                   static_cast<unsigned long long>(st.failed),
                   static_cast<unsigned long long>(st.cancelled),
                   static_cast<unsigned long long>(st.in_flight));
    }
  }
  return out;
}

struct system_desc {
  const char* key;   // CSV name
  const char* label; // table name
  bool multi_caller;
  sample (*run)(const config&, bool, const char*, std::vector<std::int64_t>&);
};

#if defined(PALITRA_BENCH_MCQUEUE_EXE)
sample measure_child(const config& c, bool, const char*, std::vector<std::int64_t>&);
#endif

const std::vector<system_desc> systems{{
    {"palitra", "palitra `runner::run`", true, &measure<palitra_system>},
#if defined(PALITRA_BENCH_MCQUEUE_EXE)
    {"palitra_mcqueue", "palitra, moodycamel submission queue (ablation)", true, &measure_child},
#endif
    {"bridge", "yield-then-sleep bridge (MPSC + futex)", true, &measure<bridge_system>},
    {"asio", "asio `co_spawn`+`use_future`", true, &measure<asio_system>},
    {"mutex_cv", "mutex+condvar queue, promise", true, &measure<mutex_cv_system>},
    {"futex_floor", "futex ping-pong (floor)", false, &measure<futex_floor_system>},
    {"switch_bound", "sched_yield ring (switch bound)", true, &measure<switch_bound_system>},
}};

std::size_t index_of(const char* key) {
  for (std::size_t i = 0; i < systems.size(); ++i)
    if (std::strcmp(systems[i].key, key) == 0) return i;
  std::fprintf(stderr, "palitra_bench: no system '%s'\n", key);
  std::exit(2);
}
const std::size_t asio_index = index_of("asio"), floor_index = index_of("futex_floor"),
                  bridge_index = index_of("bridge"), bound_index = index_of("switch_bound");

/// Every numeric field of a sample, in CSV column order (after round,system).
std::vector<double*> fields(sample& s) {
  std::vector<double*> f{&s.p50, &s.p99, &s.mean};
  for (double& v : s.tput) f.push_back(&v);
  for (double* p : {&s.allocs_1t, &s.allocs_16t, &s.wakeups_1t, &s.wakeups_16t, &s.iters_1t,
                    &s.iters_16t, &s.sparse_p50, &s.sparse_p99, &s.wakeups_sparse, &s.cpu_sparse,
                    &s.cpu_1t, &s.cpu_16t, &s.csw_1t, &s.csw_16t,
                    &s.cwakes_16t})
    f.push_back(p);
  return f;
}

#if defined(PALITRA_BENCH_MCQUEUE_EXE)
/// One round of the moodycamel ablation: the same palitra sources built with
/// the moodycamel ablation (PALITRA_SUBMISSION_QUEUE_HEADER) cannot share this process (same
/// symbols), so the sibling binary measures the round with this harness and
/// the same parameters and prints one CSV line (--child). It inherits this
/// process's CPU affinity, so `taskset -c 0` covers it too.
sample measure_child(const config& c, bool, const char* name, std::vector<std::int64_t>&) {
  const std::string cmd = std::string(PALITRA_BENCH_MCQUEUE_EXE) + " --child --calls " +
                          std::to_string(c.calls) + " --tput-calls " + std::to_string(c.tput_calls) +
                          " --alloc-calls " + std::to_string(c.alloc_calls) + " --sparse-calls " +
                          std::to_string(c.sparse_calls);
  std::fflush(nullptr);
  std::FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    std::fprintf(stderr, "palitra_bench: %s: cannot run %s\n", name, cmd.c_str());
    std::exit(2);
  }
  sample out;
  bool got = false;
  char line[4096];
  while (std::fgets(line, sizeof line, p) != nullptr) {
    if (std::strncmp(line, "SAMPLE,", 7) != 0) continue;
    const std::vector<double*> f = fields(out);
    const char* q = line + 7;
    for (double* v : f) {
      char* end = nullptr;
      const double x = std::strtod(q, &end);
      *v = end == q ? nan_v : x; // an empty cell is "not measured"
      q = std::strchr(end, ',');
      if (q == nullptr) break;
      ++q;
    }
    got = true;
  }
  if (pclose(p) != 0 || !got) {
    std::fprintf(stderr, "palitra_bench: %s: %s failed\n", name, cmd.c_str());
    std::exit(2);
  }
  return out;
}
#endif

// ---------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------

using palitra_bench::fmt;
using palitra_bench::load_average;
using palitra_bench::fmt_csv;
using palitra_bench::fmt_rate;
using palitra_bench::fmt_us;
using palitra_bench::max_of;
using palitra_bench::median;
using palitra_bench::min_of;

using table = std::vector<std::vector<sample>>; // [system][round]

template <class F> std::vector<double> per_round(const table& t, std::size_t sys, F get) {
  std::vector<double> v;
  for (const sample& s : t[sys]) v.push_back(get(s));
  return v;
}

/// Within-round ratio f(system sample, reference sample), median over rounds.
template <class F>
double ratio_median(const table& t, std::size_t sys, std::size_t ref, F f) {
  std::vector<double> v;
  if (t[sys].size() != t[ref].size()) return nan_v; // the reference did not run
  for (std::size_t r = 0; r < t[sys].size(); ++r) v.push_back(f(t[sys][r], t[ref][r]));
  return median(std::move(v));
}

void print_header(const config& c) {
  const palitra::runner_options defaults;
  std::printf("# palitra_bench: round trip (sync caller -> server thread -> result)\n\n");
  palitra_bench::print_machine();
  std::printf("- build: g++ %s, asio %d.%d.%d, palitra frame allocator: %s, runner defaults: "
              "caller_spin %lld ns, loop_spin %lld ns\n",
              __VERSION__, ASIO_VERSION / 100000, ASIO_VERSION / 100 % 1000, ASIO_VERSION % 100,
              palitra::detail::frame_allocator_name(),
              static_cast<long long>(defaults.caller_spin.count()),
              static_cast<long long>(defaults.loop_spin.count()));
  std::printf("- parameters: rounds %d; latency %zu timed calls after %zu warm-up; throughput "
              "%zu calls per thread count (split evenly over the threads); allocations %zu "
              "calls per pass (1 and %d threads); sparse latency %zu calls\n\n",
              c.rounds, c.calls, c.warmup, c.tput_calls, c.alloc_calls, alloc_threads,
              c.sparse_calls);
  std::fflush(stdout);
}

void print_tables(const table& t, int rounds) {
  std::printf("\n## Results: median of %d interleaved round(s)\n\n", rounds);
  std::printf("| system | p50 µs | p99 µs | mean µs | calls/s @1 | @2 | @4 | @8 | @16 | @32 | @64 | "
              "allocs/call 1t | 16t | wakeups/call 1t | 16t | loop iters/call 1t | 16t |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (std::size_t i = 0; i < systems.size(); ++i) {
    if (t[i].empty()) continue; // not selected
    auto m = [&](auto get) { return median(per_round(t, i, get)); };
    std::printf("| %s | %s | %s | %s", systems[i].label,
                fmt_us(m([](const sample& s) { return s.p50; })).c_str(),
                fmt_us(m([](const sample& s) { return s.p99; })).c_str(),
                fmt_us(m([](const sample& s) { return s.mean; })).c_str());
    for (std::size_t k = 0; k < thread_counts.size(); ++k)
      std::printf(" | %s", fmt_rate(m([k](const sample& s) { return s.tput[k]; })).c_str());
    std::printf(" | %s | %s | %s | %s | %s | %s |\n",
                fmt("%.2f", m([](const sample& s) { return s.allocs_1t; })).c_str(),
                fmt("%.2f", m([](const sample& s) { return s.allocs_16t; })).c_str(),
                fmt("%.3f", m([](const sample& s) { return s.wakeups_1t; })).c_str(),
                fmt("%.3f", m([](const sample& s) { return s.wakeups_16t; })).c_str(),
                fmt("%.2f", m([](const sample& s) { return s.iters_1t; })).c_str(),
                fmt("%.2f", m([](const sample& s) { return s.iters_16t; })).c_str());
  }

  std::printf("\n## Sparse calls and CPU cost: median of %d round(s)\n\n", rounds);
  std::printf("Sparse: one caller pauses %lld µs before each call, so the server is asleep "
              "every time (the cost of waking it). CPU: process user+sys time over the "
              "sparse run / throughput run ÷ calls (all threads, servers included; the sparse "
              "figure includes the caller's nanosleep).\n\n",
              static_cast<long long>(sparse_gap.count()));
  std::printf("| system | sparse p50 µs | sparse p99 µs | wakeups/call sparse | CPU µs/call "
              "sparse | CPU µs/call @1 | CPU µs/call @16 | switches/call @1 | @16 | caller wakes/call "
              "@16 |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (std::size_t i = 0; i < systems.size(); ++i) {
    if (t[i].empty()) continue;
    auto m = [&](auto get) { return median(per_round(t, i, get)); };
    std::printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", systems[i].label,
                fmt_us(m([](const sample& s) { return s.sparse_p50; })).c_str(),
                fmt_us(m([](const sample& s) { return s.sparse_p99; })).c_str(),
                fmt("%.3f", m([](const sample& s) { return s.wakeups_sparse; })).c_str(),
                fmt_us(m([](const sample& s) { return s.cpu_sparse; })).c_str(),
                fmt_us(m([](const sample& s) { return s.cpu_1t; })).c_str(),
                fmt_us(m([](const sample& s) { return s.cpu_16t; })).c_str(),
                fmt("%.2f", m([](const sample& s) { return s.csw_1t; })).c_str(),
                fmt("%.2f", m([](const sample& s) { return s.csw_16t; })).c_str(),
                fmt("%.3f", m([](const sample& s) { return s.cwakes_16t; })).c_str());
  }

  std::printf("\n## Ratios (within each round, median over rounds)\n\n");
  std::printf("Latency ratios: p50 ÷ reference p50 (< 1: faster). Throughput ratios: calls/s "
              "÷ asio calls/s (> 1: more calls). Floor throughput exists for 1 caller only.\n\n");
  std::printf("| system | p50 ÷ asio | p99 ÷ asio | calls/s ÷ asio @1 | @2 | @4 | @8 | @16 | @32 | @64 | "
              "p50 ÷ floor | floor calls/s ÷ calls/s @1 |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (std::size_t i = 0; i < systems.size(); ++i) {
    if (t[i].empty()) continue;
    std::printf("| %s | %s | %s", systems[i].label,
                fmt("%.2f", ratio_median(t, i, asio_index, [](const sample& a, const sample& b) {
                      return a.p50 / b.p50;
                    })).c_str(),
                fmt("%.2f", ratio_median(t, i, asio_index, [](const sample& a, const sample& b) {
                      return a.p99 / b.p99;
                    })).c_str());
    for (std::size_t k = 0; k < thread_counts.size(); ++k)
      std::printf(" | %s", fmt("%.2f", ratio_median(t, i, asio_index,
                                                    [k](const sample& a, const sample& b) {
                                                      return a.tput[k] / b.tput[k];
                                                    }))
                               .c_str());
    std::printf(" | %s | %s |\n",
                fmt("%.2f", ratio_median(t, i, floor_index, [](const sample& a, const sample& b) {
                      return a.p50 / b.p50;
                    })).c_str(),
                fmt("%.2f", ratio_median(t, i, floor_index, [](const sample& a, const sample& b) {
                      return b.tput[0] / a.tput[0];
                    })).c_str());
  }

  std::printf("\n## Throughput against the bridge and the switch bound (within each round, "
              "median over rounds)\n\n");
  std::printf("calls/s ÷ the yield-then-sleep bridge's calls/s, and ÷ the sched_yield ring's "
              "(the one-CPU bound: one voluntary context switch per call, no work).\n\n");
  std::printf("| system | ÷ bridge @1 | @4 | @16 | @64 | ÷ switch bound @1 | @4 | @16 | @64 |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (std::size_t i = 0; i < systems.size(); ++i) {
    if (t[i].empty() || !systems[i].multi_caller) continue;
    std::printf("| %s", systems[i].label);
    for (std::size_t ref : {bridge_index, bound_index})
      for (std::size_t k : {std::size_t{0}, std::size_t{2}, std::size_t{4}, std::size_t{6}})
        std::printf(" | %s", fmt("%.2f", ratio_median(t, i, ref,
                                                      [k](const sample& a, const sample& b) {
                                                        return a.tput[k] / b.tput[k];
                                                      }))
                                 .c_str());
    std::printf(" |\n");
  }

  std::printf("\n## Spread over rounds (min..max)\n\n");
  std::printf("| system | p50 µs | p99 µs | calls/s @1 | @4 | @16 | @64 |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (std::size_t i = 0; i < systems.size(); ++i) {
    if (t[i].empty()) continue;
    auto span = [&](auto get, auto f) {
      const auto v = per_round(t, i, get);
      if (std::isnan(min_of(v))) return std::string("—");
      return f(min_of(v)) + ".." + f(max_of(v));
    };
    auto tp = [&](std::size_t k) {
      return span([k](const sample& s) { return s.tput[k]; }, fmt_rate);
    };
    std::printf("| %s | %s | %s | %s | %s | %s | %s |\n", systems[i].label,
                span([](const sample& s) { return s.p50; }, fmt_us).c_str(),
                span([](const sample& s) { return s.p99; }, fmt_us).c_str(), tp(0).c_str(),
                tp(2).c_str(), tp(4).c_str(), tp(6).c_str());
  }
  std::fflush(stdout);
}

bool write_csv(const std::string& path, const table& t) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  std::fprintf(f, "round,system,p50_us,p99_us,mean_us");
  for (int n : thread_counts) std::fprintf(f, ",calls_per_s_%dt", n);
  std::fprintf(f, ",allocs_per_call_1t,allocs_per_call_16t,wakeups_per_call_1t,"
                  "wakeups_per_call_16t,loop_iters_per_call_1t,loop_iters_per_call_16t,"
                  "sparse_p50_us,sparse_p99_us,wakeups_per_call_sparse,cpu_us_per_call_sparse,"
                  "cpu_us_per_call_1t,cpu_us_per_call_16t,switches_per_call_1t,"
                  "switches_per_call_16t,caller_wakes_per_call_16t\n");
  palitra_bench::write_csv_rows(f, t, [](std::size_t i) { return systems[i].key; }, &fields);
  return std::fclose(f) == 0;
}

[[noreturn]] void usage(int code) {
  std::fprintf(code == 0 ? stdout : stderr,
               "usage: palitra_bench [--rounds N] [--calls N] [--tput-calls N] "
               "[--alloc-calls N] [--sparse-calls N] [--quick] [--csv PATH]\n"
               "  --rounds N       interleaved rounds (default 5)\n"
               "  --calls N        timed latency calls per system and round (default 20000;\n"
               "                   warm-up is N/10)\n"
               "  --tput-calls N   calls per thread count, split over the threads (default 40000)\n"
               "  --alloc-calls N  calls per allocation-counting pass (default 4000)\n"
               "  --sparse-calls N timed calls with a 300 us pause before each (default 2000)\n"
               "  --quick          smoke run: 2 rounds, 2000 calls, 4000 throughput calls,\n"
               "                   1600 allocation calls, 200 sparse calls\n"
               "  --csv PATH       also write per-round and median rows as CSV\n"
               "  --systems LIST   only these systems, comma-separated keys (palitra,\n"
               "                   palitra_mcqueue, bridge, asio, mutex_cv, futex_floor,\n"
               "                   switch_bound); default all\n");
  std::exit(code);
}

std::size_t parse_count(const char* opt, const char* v) {
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (end == v || *end != '\0' || n == 0) {
    std::fprintf(stderr, "palitra_bench: %s needs a positive integer, got '%s'\n", opt, v);
    usage(1);
  }
  return static_cast<std::size_t>(n);
}

} // namespace

int main(int argc, char** argv) {
  config c;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] { return palitra_bench::option_value(argc, argv, i, "palitra_bench", &usage); };
    if (a == "--rounds") c.rounds = static_cast<int>(parse_count("--rounds", value()));
    else if (a == "--calls") c.calls = parse_count("--calls", value());
    else if (a == "--tput-calls") c.tput_calls = parse_count("--tput-calls", value());
    else if (a == "--alloc-calls") c.alloc_calls = parse_count("--alloc-calls", value());
    else if (a == "--sparse-calls") c.sparse_calls = parse_count("--sparse-calls", value());
    else if (a == "--csv") c.csv = value();
    else if (a == "--systems") c.only = value();
    else if (a == "--child") c.child = true;
    else if (a == "--quick") {
      c.rounds = 2;
      c.calls = 2000;
      c.tput_calls = 4000;
      c.alloc_calls = 1600;
      c.sparse_calls = 200;
    } else if (a == "--help" || a == "-h") usage(0);
    else {
      std::fprintf(stderr, "palitra_bench: unknown option '%s'\n", a.c_str());
      usage(1);
    }
  }
  c.warmup = std::max<std::size_t>(100, c.calls / 10);
  std::vector<std::int64_t> ns;
  ns.reserve(c.calls);

  if (c.child) {
    // The ablation binary, run by the parent once per round (measure_child):
    // one sample of its palitra build, as one CSV line on stdout.
    sample s = measure<palitra_system>(c, true, "palitra_mcqueue", ns);
    std::printf("SAMPLE");
    for (double* v : fields(s)) std::printf(",%s", fmt_csv(*v).c_str());
    std::printf("\n");
    return 0;
  }

  const std::vector<std::size_t> selected =
      palitra_bench::select_systems(systems, c.only, "palitra_bench");

  print_header(c);
  table t(systems.size());
  const auto t_start = clock_type::now();
  palitra_bench::for_rounds(c.rounds, selected, [&](int r, std::size_t i) {
    const auto t0 = clock_type::now();
    t[i].push_back(systems[i].run(c, systems[i].multi_caller, systems[i].key, ns));
    const sample& s = t[i].back();
    std::fprintf(stderr, "round %d/%d %-12s p50 %6s µs  @1 %7s/s  @16 %7s/s  (%.1f s)\n",
                 r + 1, c.rounds, systems[i].key, fmt_us(s.p50).c_str(),
                 fmt_rate(s.tput[0]).c_str(), fmt_rate(s.tput[wake_tput_index]).c_str(),
                 std::chrono::duration<double>(clock_type::now() - t0).count());
  });
  print_tables(t, c.rounds);
  std::printf("\n(total %.1f s; load average at the end: %s)\n",
              std::chrono::duration<double>(clock_type::now() - t_start).count(),
              load_average().c_str());
  if (!c.csv.empty()) {
    if (!write_csv(c.csv, t)) {
      std::fprintf(stderr, "palitra_bench: cannot write %s\n", c.csv.c_str());
      return 1;
    }
    std::printf("CSV: %s\n", c.csv.c_str());
  }
  return 0;
}
