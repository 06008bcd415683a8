// palitra stress scenarios — the shared harness.
//
// Every scenario is its own executable (STYLE.md, "stress/") built on this
// header:
//   - params: --seed S (decimal or 0x-hex; default: random, printed first),
//     --scale K (work multiplier; default 1, scaled down automatically under
//     TSan and ASan), --rounds N (overrides the scenario's round count),
//     --long (a soak: scale x20 and no overall time limit). The first line a
//     scenario prints is "scenario=... seed=... threads=... calls=...", so
//     any failure can be replayed with the same arguments.
//   - rng: xoshiro256** seeded through splitmix64; one stream per thread,
//     derived from (seed, stream id), so a thread's choices replay exactly
//     (the interleaving does not: that is what repetition is for).
//   - call_table + watchdog: every caller thread publishes which call it is
//     in and since when. The watchdog aborts with a dump of that table (and
//     the scenario's own state) when a call has lasted too long, when no call
//     has ended for too long, or when the whole run exceeds its limit. A hang
//     becomes a failure with a state dump instead of a ctest timeout.
//   - ledger: one entry per attempted call (op, argument, outcome), written
//     only by the calling thread; the checks at the end prove that every
//     call got exactly one outcome, that each outcome is one its op allows,
//     and give the exact per-bucket counts to compare with runner_stats.
//
// Timing rules (research/reliability.md c2.12): deadlines scale with
// time_multiplier() (TSan x4, ASan x2, times PALITRA_TEST_TIMEOUT_MULTIPLIER);
// no scenario asserts a tight upper latency bound.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

#include <palitra/config.hpp>
#include <palitra/palitra.hpp>

// Sanitizer defaults for every scenario executable, so that a run by hand
// behaves like the presets' ctest runs; the *_OPTIONS environment variables
// still override them. halt_on_error=1 is not optional: after a first race
// report TSan can turn a 1 s run into a CI timeout (reliability.md c2.3).
// Each scenario is one translation unit, so these are defined once.
#if defined(PALITRA_TSAN)
extern "C" __attribute__((used, visibility("default"))) const char* __tsan_default_options() {
  return "halt_on_error=1:second_deadlock_stack=1";
}
#endif
#if defined(PALITRA_ASAN)
extern "C" __attribute__((used, visibility("default"))) const char* __asan_default_options() {
  return "detect_leaks=1:detect_stack_use_after_return=1:abort_on_error=1:halt_on_error=1";
}
extern "C" __attribute__((used, visibility("default"))) const char* __ubsan_default_options() {
  return "print_stacktrace=1:halt_on_error=1";
}
#endif

namespace scenario {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Build flavour and scaling
// ---------------------------------------------------------------------------

#if defined(PALITRA_TSAN)
inline constexpr const char* build_name = "tsan";
/// Default work scale. Measured on the 2-core CI guest: the scenarios run
/// at 1/2 to 1/4 of their plain speed under TSan (reliability.md §1.12
/// budgets 20-50k calls/s), and ctest must stay well under 60 s each.
inline constexpr double default_scale = 0.5;
inline constexpr int sanitizer_time_factor = 4;
#elif defined(PALITRA_ASAN)
inline constexpr const char* build_name = "asan";
inline constexpr double default_scale = 0.5;
inline constexpr int sanitizer_time_factor = 2;
#else
inline constexpr const char* build_name = "plain";
inline constexpr double default_scale = 1.0;
inline constexpr int sanitizer_time_factor = 1;
#endif

/// Multiplier for every deadline the harness enforces (libuv's
/// UV_TEST_TIMEOUT_MULTIPLIER; tests/support.hpp reads the same variable).
inline int time_multiplier() {
  static const int m = [] {
    const char* e = std::getenv("PALITRA_TEST_TIMEOUT_MULTIPLIER");
    const int user = e != nullptr ? std::max(1, std::atoi(e)) : 1;
    return user * sanitizer_time_factor;
  }();
  return m;
}

// ---------------------------------------------------------------------------
// Output: one line at a time, never interleaved between threads
// ---------------------------------------------------------------------------

inline std::mutex& out_mutex() {
  static std::mutex m;
  return m;
}

/// printf to `f` under the output mutex, flushed (a crash must not eat it).
inline void say(FILE* f, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
inline void say(FILE* f, const char* fmt, ...) {
  std::lock_guard<std::mutex> lk(out_mutex());
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(f, fmt, ap);
  va_end(ap);
  std::fflush(f);
}

// ---------------------------------------------------------------------------
// PRNG
// ---------------------------------------------------------------------------

inline std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// A pure function of the argument: what every call must return.
inline std::uint64_t f(std::uint64_t arg) {
  std::uint64_t x = arg ^ 0x5ca1ab1e0ddba11ull;
  return splitmix64(x);
}

/// xoshiro256**: fast, good enough, and identical on every platform.
class rng {
public:
  explicit rng(std::uint64_t seed, std::uint64_t stream = 0) {
    std::uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ull);
    for (auto& w : s_) w = splitmix64(x);
  }
  std::uint64_t next() {
    const std::uint64_t r = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
  }
  /// Uniform in [0, n) (n > 0; the tiny modulo bias does not matter here).
  std::uint64_t below(std::uint64_t n) { return next() % n; }
  /// Uniform in [lo, hi].
  std::int64_t range(std::int64_t lo, std::int64_t hi) {
    return lo + static_cast<std::int64_t>(below(static_cast<std::uint64_t>(hi - lo) + 1));
  }
  /// True with probability pct/100.
  bool percent(unsigned pct) { return below(100) < pct; }

private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::array<std::uint64_t, 4> s_{};
};

// ---------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------

struct params {
  std::uint64_t seed = 0;
  double scale = default_scale;
  bool scale_given = false;
  long rounds = -1; ///< -1: the scenario's default (scaled)
  bool soak = false;
  bool child = false; ///< global_race: this process is a spawned child
  std::vector<std::string> rest; ///< scenario-specific "--name value" pairs
  std::string argv0;

  /// n scaled, at least `floor`.
  long scaled(long n, long floor = 1) const {
    return std::max(floor, static_cast<long>(static_cast<double>(n) * scale + 0.5));
  }
  /// The --rounds override, else `n` scaled.
  long rounds_or(long n, long floor = 1) const { return rounds > 0 ? rounds : scaled(n, floor); }
  /// A scenario-specific option ("--name value"); `dflt` when absent.
  std::string opt(std::string_view name, std::string dflt = {}) const {
    for (std::size_t i = 0; i + 1 < rest.size(); ++i)
      if (rest[i] == name) return rest[i + 1];
    return dflt;
  }
  /// The arguments that replay this run.
  std::string replay() const {
    char buf[96];
    std::snprintf(buf, sizeof buf, " --seed 0x%016" PRIx64 " --scale %g", seed, scale);
    std::string r = argv0 + buf;
    if (rounds > 0) r += " --rounds " + std::to_string(rounds);
    for (const auto& a : rest) r += " " + a;
    return r;
  }
};

[[noreturn]] inline void usage(const char* argv0, const char* bad) {
  std::fprintf(stderr,
               "%s: bad argument '%s'\n"
               "usage: %s [--seed S] [--scale K] [--rounds N] [--long]\n"
               "  --seed S    replay a run (decimal or 0x-hex, as printed on the first line)\n"
               "  --scale K   work multiplier (default %g in this %s build)\n"
               "  --rounds N  rounds/iterations, overriding the scaled default\n"
               "  --long      soak: scale x20, no overall time limit (the stall and per-call\n"
               "              watchdogs stay on)\n",
               argv0, bad, argv0, default_scale, build_name);
  std::exit(2);
}

inline params parse(int argc, char** argv) {
  params p;
  p.argv0 = argc > 0 ? argv[0] : "scenario";
  bool seed_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage(argv[0], argv[i]);
      return argv[++i];
    };
    if (a == "--seed") {
      const char* v = value();
      char* end = nullptr;
      p.seed = std::strtoull(v, &end, 0);
      if (end == v || *end != '\0') usage(argv[0], v);
      seed_given = true;
    } else if (a == "--scale") {
      const char* v = value();
      char* end = nullptr;
      p.scale = std::strtod(v, &end);
      if (end == v || *end != '\0' || !(p.scale > 0)) usage(argv[0], v);
      p.scale_given = true;
    } else if (a == "--rounds") {
      const char* v = value();
      char* end = nullptr;
      p.rounds = std::strtol(v, &end, 0);
      if (end == v || *end != '\0' || p.rounds <= 0) usage(argv[0], v);
    } else if (a == "--long") {
      p.soak = true;
    } else if (a == "--child") {
      p.child = true;
    } else if (a.size() > 2 && a.substr(0, 2) == "--" && i + 1 < argc) {
      p.rest.emplace_back(a);
      p.rest.emplace_back(argv[++i]);
    } else {
      usage(argv[0], argv[i]);
    }
  }
  if (p.soak && !p.scale_given) p.scale *= 20;
  if (!seed_given) {
    std::random_device rd;
    p.seed = (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^
             static_cast<std::uint64_t>(steady::now().time_since_epoch().count());
  }
  return p;
}

// ---------------------------------------------------------------------------
// Check failures
// ---------------------------------------------------------------------------

inline std::atomic<long>& failures() {
  static std::atomic<long> n{0};
  return n;
}

/// Record a violated check; prints the first 30 (then only counts).
inline void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline void fail(const char* fmt, ...) {
  const long n = failures().fetch_add(1, std::memory_order_relaxed);
  if (n >= 30) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  say(stderr, "CHECK FAILED: %s\n", buf);
}

#define SCENARIO_CHECK(cond, ...)                                                          \
  do {                                                                                     \
    if (!(cond)) ::scenario::fail("(" #cond ") " __VA_ARGS__);                             \
  } while (0)

// ---------------------------------------------------------------------------
// Call table: which call each thread is in, and since when
// ---------------------------------------------------------------------------

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch())
      .count();
}

/// One caller thread's public state. Written by its owner, read by the
/// watchdog; every field is an atomic (relaxed: a diagnostic snapshot, no
/// field publishes another).
struct call_state {
  std::atomic<bool> used{false};
  std::atomic<long> owner{-1};          ///< the scenario's thread number
  std::atomic<long> os_tid{0};
  std::atomic<const char*> what{"idle"}; ///< a string literal
  std::atomic<std::uint64_t> call{0};
  std::atomic<std::uint64_t> arg{0};
  std::atomic<std::int64_t> since_ns{0}; ///< 0: not in a call
};

class call_table {
public:
  static constexpr std::size_t capacity = 1024;

  /// A slot for the calling thread (released by thread_slot's destructor).
  call_state* acquire(long owner) {
    for (std::size_t i = 0; i < capacity; ++i) {
      bool expected = false;
      if (!slots_[i].used.load(std::memory_order_relaxed) &&
          slots_[i].used.compare_exchange_strong(expected, true, std::memory_order_relaxed)) {
        call_state& s = slots_[i];
        s.owner.store(owner, std::memory_order_relaxed);
        s.os_tid.store(static_cast<long>(::syscall(SYS_gettid)), std::memory_order_relaxed);
        s.what.store("idle", std::memory_order_relaxed);
        s.since_ns.store(0, std::memory_order_relaxed);
        return &s;
      }
    }
    return &overflow_; // not tracked (more than `capacity` live threads)
  }
  void release(call_state* s) {
    if (s == &overflow_) return;
    s->what.store("exited", std::memory_order_relaxed);
    s->since_ns.store(0, std::memory_order_relaxed);
    s->used.store(false, std::memory_order_relaxed);
  }

  /// Oldest call in progress, in ns (0 if none).
  std::int64_t oldest_call_age(std::int64_t now) const {
    std::int64_t oldest = 0;
    for (const auto& s : slots_) {
      if (!s.used.load(std::memory_order_relaxed)) continue;
      const std::int64_t since = s.since_ns.load(std::memory_order_relaxed);
      if (since != 0) oldest = std::max(oldest, now - since);
    }
    return oldest;
  }

  void dump(FILE* out) const {
    const std::int64_t now = now_ns();
    int live = 0, in_call = 0;
    for (const auto& s : slots_) {
      if (!s.used.load(std::memory_order_relaxed)) continue;
      ++live;
      const std::int64_t since = s.since_ns.load(std::memory_order_relaxed);
      if (since == 0) continue;
      ++in_call;
      std::fprintf(out,
                   "  thread #%ld (tid %ld): in %s, call %" PRIu64 ", arg 0x%" PRIx64
                   ", for %.3f s\n",
                   s.owner.load(std::memory_order_relaxed), s.os_tid.load(std::memory_order_relaxed),
                   s.what.load(std::memory_order_relaxed), s.call.load(std::memory_order_relaxed),
                   s.arg.load(std::memory_order_relaxed), static_cast<double>(now - since) / 1e9);
    }
    for (const auto& s : slots_) {
      if (!s.used.load(std::memory_order_relaxed) || s.since_ns.load(std::memory_order_relaxed) != 0)
        continue;
      std::fprintf(out, "  thread #%ld (tid %ld): %s (not in a call)\n",
                   s.owner.load(std::memory_order_relaxed), s.os_tid.load(std::memory_order_relaxed),
                   s.what.load(std::memory_order_relaxed));
    }
    std::fprintf(out, "  (%d live caller threads, %d in a call)\n", live, in_call);
  }

private:
  std::array<call_state, capacity> slots_{};
  call_state overflow_;
};

inline call_table& calls() {
  static call_table* t = new call_table; // never destroyed: the watchdog may outlive main
  return *t;
}

/// Progress: bumped whenever a call ends (the stall detector watches it).
inline std::atomic<std::uint64_t>& progress() {
  static std::atomic<std::uint64_t> p{0};
  return p;
}

/// The calling thread's row in the call table, for the thread's lifetime.
class thread_slot {
public:
  explicit thread_slot(long owner) : s_(calls().acquire(owner)) {}
  ~thread_slot() { calls().release(s_); }
  thread_slot(const thread_slot&) = delete;
  thread_slot& operator=(const thread_slot&) = delete;

  /// Mark "in call `what` #call with `arg`" until the returned guard dies.
  struct in_call {
    call_state* s;
    ~in_call() {
      s->since_ns.store(0, std::memory_order_relaxed);
      s->what.store("between calls", std::memory_order_relaxed);
      progress().fetch_add(1, std::memory_order_relaxed);
    }
  };
  [[nodiscard]] in_call enter(const char* what, std::uint64_t call, std::uint64_t arg) {
    s_->what.store(what, std::memory_order_relaxed);
    s_->call.store(call, std::memory_order_relaxed);
    s_->arg.store(arg, std::memory_order_relaxed);
    s_->since_ns.store(now_ns(), std::memory_order_relaxed);
    return in_call{s_};
  }
  /// A non-call state shown in the dump ("waiting at barrier", ...).
  void state(const char* what) { s_->what.store(what, std::memory_order_relaxed); }

private:
  call_state* s_;
};

// ---------------------------------------------------------------------------
// Watchdog
// ---------------------------------------------------------------------------

/// Aborts the process with a state dump when
///   - one call has been in progress for more than `call_limit`, or
///   - no call has ended for `stall_limit` while some thread is in a call, or
///   - the run exceeds `total_limit` (0: none; --long disables it).
/// Every limit is multiplied by time_multiplier().
class watchdog {
public:
  struct limits {
    std::chrono::seconds call_limit{10};
    std::chrono::seconds stall_limit{20};
    std::chrono::seconds total_limit{0};
  };

  watchdog(const params& p, const char* scenario, limits l)
      : scenario_(scenario), replay_(p.replay()), l_(l), start_(steady::now()) {
    const int m = time_multiplier();
    l_.call_limit *= m;
    l_.stall_limit *= m;
    l_.total_limit = p.soak ? std::chrono::seconds(0) : l_.total_limit * m;
    thread_ = std::thread([this] { watch(); });
  }
  ~watchdog() {
    {
      std::lock_guard<std::mutex> lk(m_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

  /// Extra state the dump should print (runner stats, round, phase...). The
  /// function runs on the watchdog thread and must not block for long.
  void on_dump(std::function<void(FILE*)> fn) {
    std::lock_guard<std::mutex> lk(m_);
    extra_ = std::move(fn);
  }
  /// The current phase, shown in the dump (a string literal).
  void phase(const char* what) { phase_.store(what, std::memory_order_relaxed); }

  const limits& effective() const { return l_; }

private:
  void watch() {
    std::unique_lock<std::mutex> lk(m_);
    std::uint64_t last_progress = progress().load(std::memory_order_relaxed);
    auto last_change = steady::now();
    while (!cv_.wait_for(lk, 100ms, [this] { return done_; })) {
      const auto now = steady::now();
      const std::uint64_t p = progress().load(std::memory_order_relaxed);
      if (p != last_progress) {
        last_progress = p;
        last_change = now;
      }
      const std::int64_t oldest = calls().oldest_call_age(now_ns());
      const char* why = nullptr;
      char buf[200];
      if (oldest > std::chrono::nanoseconds(l_.call_limit).count()) {
        std::snprintf(buf, sizeof buf, "a call has been in progress for %.1f s (limit %lld s)",
                      static_cast<double>(oldest) / 1e9,
                      static_cast<long long>(l_.call_limit.count()));
        why = buf;
      } else if (oldest > 0 && now - last_change > l_.stall_limit) {
        std::snprintf(buf, sizeof buf, "no call ended for %lld s while calls are in progress",
                      static_cast<long long>(l_.stall_limit.count()));
        why = buf;
      } else if (l_.total_limit.count() > 0 && now - start_ > l_.total_limit) {
        std::snprintf(buf, sizeof buf, "the run exceeded %lld s",
                      static_cast<long long>(l_.total_limit.count()));
        why = buf;
      }
      if (why != nullptr) fire(why);
    }
  }

  [[noreturn]] void fire(const char* why) {
    {
      std::lock_guard<std::mutex> out(out_mutex());
      std::fprintf(stderr,
                   "\nWATCHDOG: scenario=%s: %s: treating it as a hang\n"
                   "  elapsed %.1f s, phase '%s'\n  replay: %s\n  call states:\n",
                   scenario_, why,
                   std::chrono::duration<double>(steady::now() - start_).count(),
                   phase_.load(std::memory_order_relaxed), replay_.c_str());
      calls().dump(stderr);
      if (extra_) {
        std::fprintf(stderr, "  scenario state:\n");
        extra_(stderr);
      }
      std::fflush(stderr);
    }
    native_stacks();
    std::abort();
  }

  /// PALITRA_STRESS_GDB=1: print every thread's native stack with gdb
  /// before aborting (reliability.md (b): the hang watchdog shows where each
  /// thread is blocked). posix_spawn, not fork: no fork in a threaded
  /// sanitized process (c2.6).
  static void native_stacks() {
    const char* e = std::getenv("PALITRA_STRESS_GDB");
    if (e == nullptr || *e == '\0' || std::strcmp(e, "0") == 0) {
      std::fprintf(stderr, "  (set PALITRA_STRESS_GDB=1 for every thread's native stack)\n");
      return;
    }
#if defined(PR_SET_PTRACER)
    ::prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0); // Yama: let the child attach
#endif
    char pid_s[16];
    std::snprintf(pid_s, sizeof pid_s, "%d", static_cast<int>(::getpid()));
    char a0[] = "gdb", a1[] = "-batch", a2[] = "-p", a3[] = "-ex", a4[] = "thread apply all bt";
    char* argv[] = {a0, a1, a2, pid_s, a3, a4, nullptr};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
    pid_t child = -1;
    if (posix_spawnp(&child, "gdb", &fa, nullptr, argv, environ) == 0) {
      int status = 0;
      for (int i = 0; i < 600 && ::waitpid(child, &status, WNOHANG) == 0; ++i)
        std::this_thread::sleep_for(100ms); // at most a minute
    } else {
      std::fprintf(stderr, "  (gdb could not be started)\n");
    }
    posix_spawn_file_actions_destroy(&fa);
  }

  const char* scenario_;
  std::string replay_;
  limits l_;
  steady::time_point start_;
  std::atomic<const char*> phase_{"start"};
  std::mutex m_;
  std::condition_variable cv_;
  bool done_ = false;
  std::function<void(FILE*)> extra_;
  std::thread thread_;
};

// ---------------------------------------------------------------------------
// Outcomes and the ledger
// ---------------------------------------------------------------------------

/// The exception the scenarios' tasks throw: carries the call's argument,
/// so the caller can prove it got its own exception back, intact.
class user_error : public std::runtime_error {
public:
  explicit user_error(std::uint64_t arg)
      : std::runtime_error("user_error " + std::to_string(arg)), arg_(arg) {}
  std::uint64_t arg() const noexcept { return arg_; }

private:
  std::uint64_t arg_;
};

enum class kind : std::uint8_t {
  none,         ///< no outcome recorded (yet)
  value,        ///< returned f(arg)
  wrong_value,  ///< returned something else
  user_error,   ///< user_error carrying this call's arg, message intact
  wrong_user,   ///< user_error of another call, or a mangled message
  timeout,      ///< palitra::timeout_error
  cancelled,    ///< palitra::cancelled_error
  closed_gate,  ///< runner_closed_error at submission: nothing ran
  closed,       ///< runner_closed_error for an accepted call (close() ended it)
  other_error,  ///< anything else
  count_
};
inline constexpr std::size_t kind_count = static_cast<std::size_t>(kind::count_);

inline const char* kind_name(kind k) {
  static constexpr const char* names[] = {"none",      "value",       "wrong_value",
                                          "user_error", "wrong_user", "timeout",
                                          "cancelled", "closed_gate", "closed",
                                          "other_error"};
  return names[static_cast<std::size_t>(k)];
}

/// runner_closed_error at the gate ("the runner is closed or closing": the
/// call was never accepted, so runner_stats never counted it) versus for an
/// accepted call (rejected by the loop, or cancelled by close()). The
/// distinction is by message because the type is the same by design; it is
/// what lets close_race check `attempts == submitted + gate rejections`.
inline kind classify_closed(const palitra::runner_closed_error& e) {
  return std::strstr(e.what(), "closed or closing") != nullptr ? kind::closed_gate : kind::closed;
}

/// Run `call` (which returns the uint64 result) and classify how it ended.
/// `detail` receives the message of an unexpected error.
template <class F>
kind outcome_of(F&& call, std::uint64_t arg, std::string* detail = nullptr) {
  try {
    const std::uint64_t v = call();
    if (v == f(arg)) return kind::value;
    if (detail != nullptr) *detail = "got " + std::to_string(v) + " want " + std::to_string(f(arg));
    return kind::wrong_value;
  } catch (const user_error& e) {
    if (e.arg() == arg && std::string_view(e.what()) == "user_error " + std::to_string(arg))
      return kind::user_error;
    if (detail != nullptr) *detail = e.what();
    return kind::wrong_user;
  } catch (const palitra::timeout_error&) {
    return kind::timeout;
  } catch (const palitra::cancelled_error&) {
    return kind::cancelled;
  } catch (const palitra::runner_closed_error& e) {
    return classify_closed(e);
  } catch (const std::exception& e) {
    if (detail != nullptr) *detail = e.what();
    return kind::other_error;
  } catch (...) {
    if (detail != nullptr) *detail = "non-std exception";
    return kind::other_error;
  }
}

/// Per-call outcomes. Each thread appends to its own row only (no sharing
/// while the threads run); the rows are read after the threads are joined.
class ledger {
public:
  struct entry {
    std::uint64_t arg;
    std::uint8_t op;
    kind outcome;
  };

  ledger(std::vector<const char*> op_names, std::size_t threads)
      : ops_(std::move(op_names)), rows_(threads), allowed_(ops_.size(), 0) {}

  /// `op` may end in `k` (each op starts with nothing allowed).
  void allow(std::uint8_t op, std::initializer_list<kind> ks) {
    for (kind k : ks) allowed_[op] |= 1u << static_cast<unsigned>(k);
  }
  void reserve(std::size_t thread, std::size_t calls) { rows_[thread].reserve(calls); }
  /// Grow to at least `threads` rows (before the new threads start).
  void resize(std::size_t threads) {
    if (rows_.size() < threads) rows_.resize(threads);
  }

  /// A call begins: its index in the thread's row.
  std::size_t begin(std::size_t thread, std::uint8_t op, std::uint64_t arg) {
    rows_[thread].push_back(entry{arg, op, kind::none});
    return rows_[thread].size() - 1;
  }
  /// The call ended with `k`. A second outcome for one call is a violation.
  void end(std::size_t thread, std::size_t idx, kind k, const std::string& detail = {}) {
    entry& e = rows_[thread][idx];
    if (e.outcome != kind::none) {
      fail("thread %zu call %zu (op %s, arg 0x%" PRIx64 "): second outcome %s after %s", thread,
           idx, ops_[e.op], e.arg, kind_name(k), kind_name(e.outcome));
      return;
    }
    e.outcome = k;
    if ((allowed_[e.op] & (1u << static_cast<unsigned>(k))) == 0)
      fail("thread %zu call %zu (op %s, arg 0x%" PRIx64 "): outcome %s is not allowed%s%s",
           thread, idx, ops_[e.op], e.arg, kind_name(k), detail.empty() ? "" : ": ",
           detail.c_str());
  }

  /// After the threads joined: every call has exactly one outcome, and
  /// `expected_calls[t]` (if given) calls were made by thread t. Fills the
  /// per-(op, kind) matrix.
  void finish(const std::vector<std::size_t>* expected_calls = nullptr) {
    matrix_.assign(ops_.size(), std::array<std::uint64_t, kind_count>{});
    for (std::size_t t = 0; t < rows_.size(); ++t) {
      if (expected_calls != nullptr && t < expected_calls->size() &&
          rows_[t].size() != (*expected_calls)[t])
        fail("thread %zu made %zu calls, expected %zu", t, rows_[t].size(),
             (*expected_calls)[t]);
      for (std::size_t i = 0; i < rows_[t].size(); ++i) {
        const entry& e = rows_[t][i];
        if (e.outcome == kind::none)
          fail("thread %zu call %zu (op %s, arg 0x%" PRIx64 "): no outcome", t, i, ops_[e.op],
               e.arg);
        ++matrix_[e.op][static_cast<std::size_t>(e.outcome)];
      }
    }
  }

  /// The outcome of one call (after the threads joined).
  kind outcome(std::size_t thread, std::size_t idx) const { return rows_[thread][idx].outcome; }

  std::uint64_t count(kind k) const {
    std::uint64_t n = 0;
    for (const auto& row : matrix_) n += row[static_cast<std::size_t>(k)];
    return n;
  }
  std::uint64_t count(std::uint8_t op, kind k) const {
    return matrix_[op][static_cast<std::size_t>(k)];
  }
  std::uint64_t calls() const {
    std::uint64_t n = 0;
    for (const auto& row : matrix_)
      for (auto c : row) n += c;
    return n;
  }
  /// Forget every row (between rounds); keeps the allowed table.
  void clear() {
    for (auto& r : rows_) r.clear();
    matrix_.clear();
  }

  /// "op: kind=n kind=n" lines for the summary.
  void print(FILE* out, const char* indent = "  ") const {
    for (std::size_t op = 0; op < ops_.size(); ++op) {
      std::string line;
      for (std::size_t k = 1; k < kind_count; ++k)
        if (matrix_[op][k] != 0)
          line += " " + std::string(kind_name(static_cast<kind>(k))) + "=" +
                  std::to_string(matrix_[op][k]);
      if (!line.empty()) say(out, "%s%-12s%s\n", indent, ops_[op], line.c_str());
    }
  }

private:
  std::vector<const char*> ops_;
  std::vector<std::vector<entry>> rows_;
  std::vector<std::uint32_t> allowed_;
  std::vector<std::array<std::uint64_t, kind_count>> matrix_;
};

// ---------------------------------------------------------------------------
// runner_stats checks
// ---------------------------------------------------------------------------

inline std::string stats_line(const palitra::runner_stats& s) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "submitted=%" PRIu64 " completed=%" PRIu64 " failed=%" PRIu64 " cancelled=%" PRIu64
                " in_flight=%" PRIu64 " loop_wakeups=%" PRIu64 " loop_iterations=%" PRIu64,
                s.submitted, s.completed, s.failed, s.cancelled, s.in_flight, s.loop_wakeups,
                s.loop_iterations);
  return buf;
}

/// Balance with nothing in flight (DESIGN.md §2 "Counters"), and the exact
/// buckets the ledger predicts. Every blocking call and future is counted
/// by the loop before it is published, so once every caller has its
/// outcome the counters are final: no polling.
inline void check_stats(const char* what, const palitra::runner_stats& s,
                        std::uint64_t completed, std::uint64_t failed, std::uint64_t cancelled) {
  if (s.in_flight != 0 || s.submitted != s.completed + s.failed + s.cancelled ||
      s.completed != completed || s.failed != failed || s.cancelled != cancelled)
    fail("%s: runner_stats %s; the ledger predicts submitted=%" PRIu64 " completed=%" PRIu64
         " failed=%" PRIu64 " cancelled=%" PRIu64 " in_flight=0",
         what, stats_line(s).c_str(), completed + failed + cancelled, completed, failed,
         cancelled);
}

// ---------------------------------------------------------------------------
// Work shapes: what a task does on the loop before it returns or throws
// ---------------------------------------------------------------------------

enum class shape : std::uint8_t { immediate, yields, sleep, nested };

struct work {
  shape s = shape::immediate;
  int yields = 0;
  std::chrono::nanoseconds sleep{0};
};

inline const char* shape_name(shape s) {
  static constexpr const char* names[] = {"immediate", "yields", "sleep", "nested"};
  return names[static_cast<std::size_t>(s)];
}

/// A random shape: return at once, 1-3 yields, a 0..max_sleep timer, or a
/// child task doing one of those (co_await chain of depth 2).
inline work random_work(rng& r, std::chrono::nanoseconds max_sleep) {
  work w;
  w.s = static_cast<shape>(r.below(4));
  w.yields = static_cast<int>(r.range(1, 3));
  w.sleep = std::chrono::nanoseconds(r.range(0, max_sleep.count()));
  return w;
}

inline palitra::task<void> do_work(work w) {
  switch (w.s) {
  case shape::immediate: break;
  case shape::yields:
    for (int i = 0; i < w.yields; ++i) co_await palitra::yield();
    break;
  case shape::sleep: co_await palitra::sleep_for(w.sleep); break;
  case shape::nested: {
    work inner = w;
    inner.s = w.yields == 1 ? shape::yields : shape::sleep;
    co_await do_work(inner);
    break;
  }
  }
}

/// Does `w`, then returns f(arg).
inline palitra::task<std::uint64_t> value_task(std::uint64_t arg, work w) {
  if (w.s != shape::immediate) co_await do_work(w);
  co_return f(arg);
}

/// Does `w`, then throws user_error(arg) (from a child task for `nested`,
/// so the exception crosses a co_await before it crosses threads).
inline palitra::task<std::uint64_t> throw_task(std::uint64_t arg, work w) {
  if (w.s == shape::nested) {
    w.s = shape::yields;
    co_return co_await throw_task(arg, w);
  }
  if (w.s != shape::immediate) co_await do_work(w);
  throw user_error(arg);
}

// ---------------------------------------------------------------------------
// Start and end lines
// ---------------------------------------------------------------------------

/// The first line: "scenario=NAME seed=0x... threads=T calls=C <extra>".
inline void print_header(const char* name, const params& p, long threads, const std::string& calls,
                         const std::string& extra = {}) {
  say(stdout,
      "scenario=%s seed=0x%016" PRIx64 " threads=%ld calls=%s scale=%g build=%s%s%s%s\n", name,
      p.seed, threads, calls.c_str(), p.scale, build_name, p.soak ? " long=1" : "",
      extra.empty() ? "" : " ", extra.c_str());
  say(stdout, "  replay: %s%s\n", p.replay().c_str(), p.soak ? " --long" : "");
}

/// The last line; returns the process exit code.
inline int finish(const char* name, const params& p, steady::time_point start,
                  const std::string& summary) {
  const double secs = std::chrono::duration<double>(steady::now() - start).count();
  const long n = failures().load();
  say(stdout, "summary scenario=%s result=%s failures=%ld seed=0x%016" PRIx64 " %s elapsed=%.2fs\n",
      name, n == 0 ? "PASS" : "FAIL", n, p.seed, summary.c_str(), secs);
  return n == 0 ? 0 : 1;
}

/// Busy-wait (without yielding the thread) for about `d`.
inline void spin_for(std::chrono::nanoseconds d) {
  const auto until = steady::now() + d;
  while (steady::now() < until) {
  }
}

} // namespace scenario
