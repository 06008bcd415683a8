// palitra — a small deterministic scheduler (folly's DeterministicSchedule
// pattern) that runs the production protocol templates (completion slot,
// submission gate, MPSC queue, wake elision) with their sync policy set to
// dsched_sync, so that a seed fixes one interleaving of the real code.
//
// Protocol (the baton):
//   Participants are real std::threads, but at most one of them runs at a
//   time: the one holding the baton. Every atomic access through
//   dsched::atomic<T>, every address wait/wake, every event_fd operation and
//   every dsched_sync::yield() is a yield point. At a yield point the running
//   thread asks a seeded PRNG which runnable thread performs the next access;
//   if it is another thread, it hands the baton over (that thread's
//   semaphore) and sleeps on its own. The access itself happens after the
//   yield point, so the trace lists accesses in the order they took effect
//   and every access is sequentially consistent (memory orders are TSan's
//   job on real runs; research/reliability.md c2.14).
//   thread states: runnable -> blocked (address wait, event_fd wait)
//                  blocked  -> runnable (wake, post, injected spurious wake,
//                              timeout, or failure: drain)
//                  runnable -> finished (body returned)
// Injected faults, all drawn from the seed:
//   - an address wait or event_fd wait returns at once (spurious / EINTR),
//     or a blocked waiter is released spuriously while another thread runs;
//   - a timed waiter times out (the virtual clock jumps to its deadline);
//   - a compare_exchange_weak fails spuriously.
// Checks:
//   D1 lost wake-up: no thread is runnable, none has a deadline, and at least
//      one is blocked. Injected spurious wakes never rescue this state.
//   D2 step budget: a livelock or hang becomes a failure with the seed.
//   D3 check()/fail() from test code and the aux check run at every step.
// After a failure the scheduler drains: blocked threads are released, waits
// return at once, and test bodies see aborted() and return; a drain that
// does not finish within its own budget ends the process with the dump.
// Deterministic replay: every decision comes from the seed, only one thread
// runs at a time, and nothing depends on addresses or real time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace palitra::detail {
namespace dsched {

using time_point = std::chrono::steady_clock::time_point;

enum class op : std::uint8_t {
  load, store, exchange, cas_weak, cas_strong, fetch_add, fetch_sub,
  wait, wait_until, wake, yield, ev_post, ev_wait,
};

/// Per-seed knobs. Probabilities are in permille, per call or per step.
struct options {
  std::uint64_t seed = 1;
  std::uint32_t spurious_permille = 0;         // a wait returns at once
  std::uint32_t spurious_blocked_permille = 0; // per step, per blocked waiter
  std::uint32_t timeout_permille = 0;          // per step, per timed waiter
  std::uint32_t weak_cas_fail_permille = 0;    // per compare_exchange_weak
  std::uint32_t sticky_permille = 0;           // keep the running thread
  std::uint64_t step_budget = 200'000;         // D2
  bool verbose = false;                        // print every step
};

struct counters {
  std::uint64_t seeds = 0;
  std::uint64_t steps = 0;
  std::uint64_t switches = 0;          // baton hand-overs
  std::uint64_t blocks = 0;            // waits that really slept
  std::uint64_t wakes = 0;             // wake_one / post that made a thread runnable
  std::uint64_t empty_wakes = 0;       // wake_one on an address nobody waits on
  std::uint64_t spurious = 0;          // injected spurious / EINTR returns
  std::uint64_t timeouts = 0;          // timed waits that timed out
  std::uint64_t weak_cas_failures = 0; // injected
  counters& operator+=(const counters& o) noexcept;
};

struct trace_entry {
  std::uint64_t step = 0;
  int thread = -1;
  op kind = op::yield;
  const void* addr = nullptr;
  std::uint64_t a = 0, b = 0, c = 0; // op-specific, see describe() in dsched.cpp
  bool ok = true;
};

enum class wake_reason : std::uint8_t { woken, spurious, timeout, aborted };
enum class wait_kind : std::uint8_t { address, event };

class scheduler {
public:
  explicit scheduler(const options& o);
  ~scheduler();
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  /// Adds a participant; it starts when run() hands it the baton.
  void spawn(std::string name, std::function<void()> body);
  /// Names [base, base+size) in traces ("name+off").
  void name_range(const void* base, std::size_t size, std::string name);
  /// Runs after every step with yield points off (D3); call check() in it.
  void set_aux_check(std::function<void()> f);
  /// Runs every participant to the end. false: a check failed (failure()).
  /// Thread: a non-participant (main). Blocks: until every body returned.
  bool run();

  const std::string& failure() const noexcept { return failure_; }
  const counters& stats() const noexcept { return stats_; }

  // ---- participant side (the baton holder only)
  static scheduler* current() noexcept;
  std::uint64_t random(std::uint64_t n) noexcept; // [0, n)
  bool chance(std::uint32_t permille) noexcept;
  bool failed() const noexcept { return failed_; }
  void fail(const std::string& what) noexcept;
  time_point now() const noexcept { return clock_; }
  const options& opts() const noexcept { return opt_; }

  trace_entry* enter(op o, const void* addr) noexcept; // the yield point
  void leave(trace_entry* e) noexcept;
  wake_reason block(const void* key, wait_kind k, const time_point* deadline) noexcept;
  bool wake_one(const void* key, wait_kind k) noexcept;
  void count_spurious() noexcept { ++stats_.spurious; }
  void count_timeout() noexcept { ++stats_.timeouts; }
  void count_weak_cas_failure() noexcept { ++stats_.weak_cas_failures; }

private:
  struct thread_rec;
  thread_rec* pick(thread_rec* self) noexcept;
  thread_rec* resolve_stall() noexcept;
  void switch_to(thread_rec* self, thread_rec* next) noexcept;
  void release(thread_rec* t, wake_reason r) noexcept;
  void inject() noexcept;
  void finish(thread_rec* self) noexcept;
  std::string describe(const trace_entry& e) const;
  std::string describe_addr(const void* a) const;
  std::string dump() const;
  std::uint64_t next_random() noexcept;

  options opt_;
  std::uint64_t rng_[4];
  time_point clock_;
  std::vector<std::unique_ptr<thread_rec>> threads_;
  struct named { const char* base; std::size_t size; std::string name; };
  std::vector<named> names_;
  std::function<void()> aux_;
  std::vector<trace_entry> ring_; // the last steps, for the failure dump
  std::size_t ring_next_ = 0;
  std::uint64_t block_seq_ = 0;
  counters stats_;
  bool failed_ = false;
  std::string failure_;
  struct done_signal;
  std::unique_ptr<done_signal> done_;
};

/// The yield point for code that is not an atomic access. No-op outside a
/// participant or inside a no_step scope.
trace_entry* enter(op o, const void* addr) noexcept;
void leave(trace_entry* e, std::uint64_t a = 0, std::uint64_t b = 0, std::uint64_t c = 0,
           bool ok = true) noexcept;
/// True once the current run failed (bodies should return).
bool aborted() noexcept;
/// D3: fails the run (first failure wins) with the thread name and `what`.
void check(bool ok, const char* what) noexcept;
/// [0, n) from the seed; 0 outside a participant.
std::uint64_t random(std::uint64_t n) noexcept;
/// Turns yield points off for this thread, so that a check reads shared
/// state at one instant (no other thread can run inside it).
class no_step {
public:
  no_step() noexcept;
  ~no_step();
  no_step(const no_step&) = delete;
  no_step& operator=(const no_step&) = delete;
};
/// Set once by the driver: what to print as the replay command prefix.
void set_replay_prefix(std::string s);
const std::string& replay_prefix() noexcept;

template <class T> std::uint64_t bits(T v) noexcept {
  if constexpr (std::is_pointer_v<T>)
    return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(v));
  else
    return static_cast<std::uint64_t>(v);
}

/// std::atomic's API as the protocol templates use it; every operation is
/// a yield point. The value lives in a real std::atomic so that the drain
/// after a failure and non-participant reads stay well defined.
template <class T> class atomic {
  static_assert(std::is_trivially_copyable_v<T>);

public:
  atomic() noexcept : v_{} {}
  constexpr atomic(T v) noexcept : v_(v) {}
  atomic(const atomic&) = delete;
  atomic& operator=(const atomic&) = delete;

  T load(std::memory_order mo = std::memory_order_seq_cst) const noexcept {
    trace_entry* e = enter(op::load, this);
    const T r = v_.load(mo);
    leave(e, bits(r));
    return r;
  }
  void store(T v, std::memory_order mo = std::memory_order_seq_cst) noexcept {
    trace_entry* e = enter(op::store, this);
    v_.store(v, mo);
    leave(e, bits(v));
  }
  T exchange(T v, std::memory_order mo = std::memory_order_seq_cst) noexcept {
    trace_entry* e = enter(op::exchange, this);
    const T r = v_.exchange(v, mo);
    leave(e, bits(r), bits(v));
    return r;
  }
  bool compare_exchange_weak(T& expected, T desired, std::memory_order s,
                             std::memory_order f) noexcept {
    return cas(op::cas_weak, expected, desired, s, f);
  }
  bool compare_exchange_weak(T& expected, T desired,
                             std::memory_order mo = std::memory_order_seq_cst) noexcept {
    return cas(op::cas_weak, expected, desired, mo, failure_order(mo));
  }
  bool compare_exchange_strong(T& expected, T desired, std::memory_order s,
                               std::memory_order f) noexcept {
    return cas(op::cas_strong, expected, desired, s, f);
  }
  bool compare_exchange_strong(T& expected, T desired,
                               std::memory_order mo = std::memory_order_seq_cst) noexcept {
    return cas(op::cas_strong, expected, desired, mo, failure_order(mo));
  }
  T fetch_add(T d, std::memory_order mo = std::memory_order_seq_cst) noexcept
    requires std::is_integral_v<T>
  {
    trace_entry* e = enter(op::fetch_add, this);
    const T r = v_.fetch_add(d, mo);
    leave(e, bits(r), bits(d));
    return r;
  }
  T fetch_sub(T d, std::memory_order mo = std::memory_order_seq_cst) noexcept
    requires std::is_integral_v<T>
  {
    trace_entry* e = enter(op::fetch_sub, this);
    const T r = v_.fetch_sub(d, mo);
    leave(e, bits(r), bits(d));
    return r;
  }

  /// The value without a yield point: the compare half of a futex wait,
  /// which is one step with the sleep.
  T peek() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
  static std::memory_order failure_order(std::memory_order mo) noexcept {
    if (mo == std::memory_order_acq_rel) return std::memory_order_acquire;
    if (mo == std::memory_order_release) return std::memory_order_relaxed;
    return mo;
  }
  bool cas(op k, T& expected, T desired, std::memory_order s, std::memory_order f) noexcept {
    trace_entry* e = enter(k, this);
    const T want = expected;
    bool ok;
    scheduler* sc = e != nullptr ? scheduler::current() : nullptr;
    if (k == op::cas_weak && sc != nullptr && sc->chance(sc->opts().weak_cas_fail_permille)) {
      sc->count_weak_cas_failure();
      expected = v_.load(f); // a spurious failure still reports the current value
      ok = false;
    } else {
      // strong underneath even for _weak: a real spurious failure (LL/SC)
      // would make the run depend on the host, not on the seed.
      ok = v_.compare_exchange_strong(expected, desired, s, f);
    }
    leave(e, bits(want), bits(desired), bits(expected), ok);
    return ok;
  }

  std::atomic<T> v_;
};

/// A stand-in for the loop's eventfd + epoll: post() is write(fd, 1),
/// wait() is epoll_wait + read. In drain mode (eventfd) a read resets the
/// counter; in semaphore mode (EFD_SEMAPHORE) it takes one. wait() may
/// also return at once without reading (EINTR, injected).
class event_fd {
public:
  enum class mode { drain, semaphore };
  explicit event_fd(mode m = mode::drain) noexcept : mode_(m) {}
  event_fd(const event_fd&) = delete;
  event_fd& operator=(const event_fd&) = delete;

  void post() noexcept;
  /// Blocks: until the counter is non-zero, or a spurious return.
  void wait() noexcept;
  /// The counter without a yield point (checks).
  std::uint64_t count() const noexcept { return count_; }

private:
  mode mode_;
  std::uint64_t count_ = 0; // plain: only the baton holder touches it
};

} // namespace dsched

/// The sync policy (sync_policy.hpp) that runs palitra's protocol templates
/// under the deterministic scheduler.
struct dsched_sync {
  template <class T> using atomic = dsched::atomic<T>;
  /// Returns when woken, at once if a != expected, or spuriously (injected).
  static void wait(const atomic<std::uint32_t>& a, std::uint32_t expected) noexcept;
  /// As wait(); false if it timed out (the virtual clock passed `deadline`).
  static bool wait_until(const atomic<std::uint32_t>& a, std::uint32_t expected,
                         std::chrono::steady_clock::time_point deadline) noexcept;
  /// Makes one waiter on `addr` runnable; `addr` is a key and may dangle.
  static void wake_one(const void* addr) noexcept;
  static void yield() noexcept;
  /// A spin-wait step: a scheduling point, like yield().
  static void pause() noexcept { yield(); }
  /// The virtual clock: advanced by the scheduler at every step.
  static std::chrono::steady_clock::time_point now() noexcept;
};

namespace dsched {

/// What one seed of a program produced.
struct seed_result {
  bool ok = true;
  std::string failure;
  counters stats;
  std::vector<std::pair<std::string, std::uint64_t>> extra; // coverage counters
};

/// One family of seeds: the real protocol (every seed must pass) or a
/// mutant (some seed must fail: the checker bites).
struct phase {
  std::string mutant; // empty: the real code
  std::string what;   // one line for the header
  std::function<seed_result(std::uint64_t seed, bool verbose)> run;
};

/// The command line shared by the dsched programs:
///   --seeds N        seeds per real phase (default `default_seeds`)
///   --first S        first seed (default 1)
///   --seed S         replay one seed verbosely (with --mutant NAME: a mutant)
///   --mutant NAME    only this mutant
///   --mutant-seeds M give up on a mutant after M seeds (default 20000)
///   --no-mutants     skip the mutation checks
/// Returns the process exit code.
int drive(int argc, char** argv, const char* test_name, std::uint64_t default_seeds,
          const std::string& header, const std::vector<phase>& phases);

} // namespace dsched
} // namespace palitra::detail
