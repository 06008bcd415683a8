// palitra — fuzz target: the public API on a real runner, against an outcome
// model.
//
// Input bytes decode into a program of at most 40 operations, applied to a
// real palitra::runner (and the global runner) from this one thread, and to
// a reference model that knows, for every accepted call, which outcomes are
// legitimate. Timing is real, so the model allows exactly the alternatives
// the contract (DESIGN.md §2-§4) allows and nothing else:
//   - a call nobody cancelled ends with its natural outcome;
//   - cancel / timeout / close may lose to completion: natural outcome, or
//     the error of a cancellation that was actually requested
//     (cancelled_error / timeout_error / runner_closed_error);
//   - a timed-out call has started ("the task still starts");
//   - what the caller sees agrees with what the coroutine body did: every
//     body writes its end into a record (returned v / threw / saw
//     cancelled_error), so a value is returned iff the body returned it, an
//     own exception iff the body threw it, a cancellation error iff the body
//     saw cancelled_error (or, under close only, never started);
//   - exactly once: a body starts at most once and ends at most once;
//   - guarantee 3: a frame token (a coroutine parameter) counts live frames,
//     so "the frame is gone when the blocking call returns" is checked;
//   - counters: at a `stats` op the loop is brought to quiescence (barrier
//     run, wait for every call that must end, second barrier) and
//     submitted/completed/failed/cancelled/in_flight must equal the model's
//     counts exactly; after close() they must balance with in_flight == 0.
//
// Encoding. Byte 0: the runner's options (caller_spin = {0, 5, 50} µs by
// b % 3, loop_spin by b / 3 % 3). Then ops: one op byte (op % 20) and the
// op's argument bytes; past the end of the input every byte reads 0 and the
// program stops. A spec (what a task does) is 3 bytes: kind, arg, t — kind %
// 11 (any kind) or % 8 (finite kinds only); sleep µs = t (≤ 255), yields = t %
// 8, poll µs = t % 128. Durations stay far below 1 ms so an input runs in a
// few ms; the ranges of sleeps and timeouts overlap, so every race
// (completion vs deadline vs cancel vs close) is reachable. T is a timeout
// byte: t µs, 255 = -1 µs (already expired). i picks a future slot (i % n).
//    0, 1  run(finite spec)                  + flag: through run(F&&, args...)
//    2     run(spec, T)                      spec, T
//    3     run(finite spec, 30 s)            spec
//    4, 5  submit(spec) -> future slot       spec (8 slots; when full, slot 0 is dropped)
//    6     future[i].cancel()                i
//    7     future[i].get()                   i (if the call cannot end: wait_for(0))
//    8     future[i].wait_for(0)             i
//    9     future[i].wait_for(t µs)          i, t
//   10     drop future[i]                    i (destructor: cancel, wait)
//   11     spawn(spec)                       spec
//   12     post(variant % 5)                 variant [, spec]: plain / throws /
//                                            spawn(spec) from the loop / submit(spec)
//                                            and drop on the loop (detached) /
//                                            reentrant run + close (must throw)
//   13     sleep this thread t µs            t
//   14     close()
//   15     reopen: close, destroy, new runner  options byte
//   16     stats: quiesce, exact counters
//   17     gather(n finite specs [, T])      n % 4, flag (timed), T, n specs
//   18     gather_settled(n ...)             as 17
//   19     global runner (sub % 4)           0 run(finite spec) / 1 run(finite
//                                            spec, T) / 2 submit(finite spec)+get /
//                                            3 shutdown_global_runner()
// Kinds: value, throw, sleep+value, sleep+throw, yields+value, child(sleep)
// +value, with_timeout(long child) -> catch -> alt value, poll
// this_task::cancelled() -> alt or value (all finite); long sleep (1 h),
// swallow (long sleep, catch cancelled_error -> alt value) and spin (yield
// forever: a busy loop that never sleeps) are infinite and only used where
// a timeout, a cancel or close ends them.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <palitra/palitra.hpp>

#include "fuzz_support.hpp"

namespace {

using namespace std::chrono_literals;
using palitra::task;
using palitra_fuzz::reader;
using clk = std::chrono::steady_clock;

// ---- what a task does ---------------------------------------------------------

struct fuzz_error : std::runtime_error {
  explicit fuzz_error(int a) : std::runtime_error("fuzz_error " + std::to_string(a)), arg(a) {}
  int arg;
};
struct post_error : std::runtime_error {
  post_error() : std::runtime_error("post_error") {}
};

enum kind : std::uint8_t {
  k_value,        // co_return nat
  k_throw,        // throw fuzz_error(arg)
  k_sleep_value,  // sleep_for(us), co_return nat
  k_sleep_throw,  // sleep_for(us), throw
  k_yield,        // yield() us % 8 times, co_return nat
  k_child,        // co_await child (sleep_for(us), co_return nat)
  k_with_timeout, // with_timeout(sleep 1 h, us) -> catch timeout_error -> alt
  k_poll,         // spin up to us µs polling this_task::cancelled(): alt if true, else nat
  k_long,         // sleep 1 h (ends only by cancellation)
  k_swallow,      // sleep 1 h, catch cancelled_error -> alt
  k_spin,         // yield() forever: keeps the loop busy until cancelled
  kind_count
};
constexpr kind first_infinite = k_long;
bool finite(kind k) { return k < first_infinite; }
bool returns_nat(kind k) {
  return k == k_value || k == k_sleep_value || k == k_yield || k == k_child || k == k_poll;
}
bool throws_own(kind k) { return k == k_throw || k == k_sleep_throw; }

struct spec {
  kind k = k_value;
  int arg = 0;
  unsigned us = 0; // ≤ 255
};
int nat(int arg) { return 2 * arg + 1; }
int alt(int arg) { return 2 * arg; }

// ---- what the body did --------------------------------------------------------
//
// Harness atomics (records, flags, counters) are seq_cst where no order is
// named: they carry no protocol under test, only observations, and the
// strongest order keeps every cross-thread read of them unambiguous. The
// record's `state` is the one pairing that matters: finish() (loop thread)
// publishes `value` to load() (program thread).

enum rec_state : int { r_created, r_started, r_returned, r_threw, r_cancelled };

struct record {
  std::atomic<int> state{r_created};
  std::atomic<int> frames{0}; // live objects holding a frame_token of this record
  int value = 0;              // written before finish(r_returned) (release)

  int load() const { return state.load(std::memory_order_acquire); } // pairs with finish
  void start() {
    const int prev = state.exchange(r_started, std::memory_order_acq_rel);
    FUZZ_CHECK(prev == r_created, "a task body started twice (or after it ended)");
  }
  void finish(int s) {
    // release: publishes `value` to the reader's acquire load.
    const int prev = state.exchange(s, std::memory_order_acq_rel);
    FUZZ_CHECK(prev == r_started, "a task body ended twice (or without starting)");
  }
};

/// A coroutine parameter that counts its frame: alive from the call that
/// creates the task until the frame is destroyed (wherever that happens).
class frame_token {
public:
  explicit frame_token(record& r) : rec_(&r) { r.frames.fetch_add(1, std::memory_order_acq_rel); }
  frame_token(frame_token&& o) noexcept : rec_(std::exchange(o.rec_, nullptr)) {}
  frame_token& operator=(frame_token&&) = delete;
  ~frame_token() {
    if (rec_ != nullptr) {
      const int before = rec_->frames.fetch_sub(1, std::memory_order_acq_rel);
      FUZZ_CHECK(before >= 1, "a frame was destroyed twice");
    }
  }
  record& rec() const { return *rec_; }

private:
  record* rec_;
};

/// Counts captured objects of posted callables (destroyed exactly once,
/// whether the callable ran or was rejected).
std::atomic<long> g_tracked{0};
struct tracked {
  tracked() { g_tracked.fetch_add(1, std::memory_order_relaxed); }
  tracked(tracked&& o) noexcept : live_(std::exchange(o.live_, false)) {}
  tracked& operator=(tracked&&) = delete;
  ~tracked() {
    if (live_) g_tracked.fetch_sub(1, std::memory_order_relaxed);
  }
  bool live_ = true;
};

task<int> child_sleep(spec s) {
  co_await palitra::sleep_for(std::chrono::microseconds(s.us));
  co_return nat(s.arg);
}

task<int> sleep_long() {
  co_await palitra::sleep_for(1h);
  co_return -1;
}

template <class T> task<T> body(spec s, frame_token tok) {
  record& r = tok.rec();
  r.start();
  int v = nat(s.arg);
  try {
    switch (s.k) {
    case k_value: break;
    case k_throw: r.finish(r_threw); throw fuzz_error(s.arg);
    case k_sleep_value: co_await palitra::sleep_for(std::chrono::microseconds(s.us)); break;
    case k_sleep_throw:
      co_await palitra::sleep_for(std::chrono::microseconds(s.us));
      r.finish(r_threw);
      throw fuzz_error(s.arg);
    case k_yield:
      for (unsigned i = 0; i < s.us % 8; ++i) co_await palitra::yield();
      break;
    case k_child: v = co_await child_sleep(s); break;
    case k_with_timeout: {
      bool timed_out = false;
      try {
        (void)co_await palitra::with_timeout(sleep_long(), std::chrono::microseconds(s.us));
      } catch (const palitra::timeout_error&) {
        timed_out = true;
      }
      FUZZ_CHECK(timed_out, "with_timeout around a 1 h sleep returned without timeout_error");
      v = alt(s.arg);
      break;
    }
    case k_poll: {
      const auto until = clk::now() + std::chrono::microseconds(s.us % 128);
      while (clk::now() < until) {
        if (palitra::this_task::cancelled()) {
          v = alt(s.arg);
          break;
        }
      }
      break;
    }
    case k_long: co_await palitra::sleep_for(1h); break;
    case k_swallow: {
      bool swallowed = false;
      try {
        co_await palitra::sleep_for(1h);
      } catch (const palitra::cancelled_error&) {
        swallowed = true;
      }
      FUZZ_CHECK(swallowed, "a 1 h sleep ended without cancellation");
      v = alt(s.arg);
      break;
    }
    case k_spin:
      for (;;) co_await palitra::yield();
    case kind_count: break;
    }
  } catch (const palitra::cancelled_error&) {
    r.finish(r_cancelled);
    throw;
  }
  r.value = v;
  r.finish(r_returned);
  if constexpr (std::is_void_v<T>)
    co_return;
  else
    co_return v;
}

// ---- calls and runners ------------------------------------------------------------

enum class origin : std::uint8_t {
  run,           // blocking run (and the barriers)
  submit,        // future held by the program
  spawn,         // spawn from this thread
  nested_spawn,  // spawn from a posted callable (loop thread)
  nested_submit, // submit + drop from a posted callable (detached on the loop)
  gather_child,  // a child of gather / gather_settled (not a top-level call)
  global         // on the global runner (its counters are not modelled)
};

struct call {
  spec s;
  origin from = origin::run;
  std::size_t epoch = 0;
  record rec;
  std::atomic<int> accepted{0}; // 0 unknown, 1 accepted, 2 rejected (runner_closed_error)
  bool cancel_req = false;      // future::cancel, a dropped future, a detach
  bool timeout_req = false;     // a short (possibly already expired) timeout
  bool counted() const {
    return from != origin::gather_child && from != origin::global;
  }
};

struct epoch_state {
  std::unique_ptr<palitra::runner> r;
  bool closed = false;
  std::atomic<bool> close_requested{false}; // set before close(); read by posts
  std::atomic<std::uint64_t> unhandled_spawn{0}, unhandled_post{0}, unhandled_other{0};
  std::atomic<std::uint64_t> posts_run{0};
  std::uint64_t posts_accepted = 0, posts_throwing = 0;
  // gather roots (no record): their bucket is what the caller observed
  std::uint64_t g_submitted = 0, g_completed = 0, g_failed = 0, g_cancelled = 0;
  palitra::runner_stats last{};
};

enum class oc { value, own, cancelled, timeout, closed, reentrancy, misuse, other };
struct observed {
  oc k = oc::other;
  int v = 0;
  std::string what;
};

template <class F> observed capture(F&& f) {
  try {
    return {oc::value, f(), {}};
  } catch (const fuzz_error& e) {
    FUZZ_CHECK(std::string(e.what()) == "fuzz_error " + std::to_string(e.arg),
               "an exception lost its message crossing threads");
    return {oc::own, e.arg, e.what()};
  } catch (const palitra::cancelled_error& e) {
    return {oc::cancelled, 0, e.what()};
  } catch (const palitra::timeout_error& e) {
    return {oc::timeout, 0, e.what()};
  } catch (const palitra::runner_closed_error& e) {
    return {oc::closed, 0, e.what()};
  } catch (const palitra::reentrancy_error& e) {
    return {oc::reentrancy, 0, e.what()};
  } catch (const palitra::error& e) {
    return {oc::misuse, 0, e.what()};
  } catch (const std::exception& e) {
    return {oc::other, 0, e.what()};
  } catch (...) {
    return {oc::other, 0, "non-std exception"};
  }
}

[[noreturn]] void mismatch(const char* msg, const observed& o) {
  std::fprintf(stderr, "palitra fuzz: observed outcome %d v=%d what='%s'\n", static_cast<int>(o.k),
               o.v, o.what.c_str());
  palitra_fuzz::fail("outcome", msg, __FILE__, __LINE__);
}

bool trace_on() {
  static const bool on = std::getenv("PALITRA_FUZZ_TRACE") != nullptr;
  return on;
}
/// PALITRA_FUZZ_TRACE=1: print each op, call and outcome (reproducing a crash).
#define FUZZ_TRACE(...)                                                                       \
  do {                                                                                        \
    if (trace_on()) std::fprintf(stderr, __VA_ARGS__);                                        \
  } while (0)

constexpr std::size_t max_ops = 40;
constexpr std::size_t max_futures = 8;
constexpr auto long_timeout = 30s;
constexpr auto must_end_within = 20s; // a hang, not a slow machine

struct fut_slot {
  palitra::future<int> f;
  call* c = nullptr;
  bool done_seen = false; // wait_for/ready returned true once
};

class program {
public:
  explicit program(const std::uint8_t* data, std::size_t size) : in_(data, size) {}

  void run() {
    FUZZ_CHECK(!palitra::this_task::cancelled(), "this_task::cancelled() outside a task");
    open_runner(in_.u8());
    for (std::size_t n = 0; n < max_ops && !in_.done(); ++n) {
      const auto t0 = clk::now();
      const unsigned op = in_.below(20);
      step(op);
      FUZZ_TRACE("  op %u took %lld us\n", op,
                 static_cast<long long>(
                     std::chrono::duration_cast<std::chrono::microseconds>(clk::now() - t0).count()));
    }
    const auto t0 = clk::now();
    finish();
    FUZZ_TRACE("  finish took %lld us\n",
               static_cast<long long>(
                   std::chrono::duration_cast<std::chrono::microseconds>(clk::now() - t0).count()));
  }

private:
  // ---- model queries
  epoch_state& cur() { return epochs_.back(); }
  palitra::runner& R() { return *cur().r; }
  bool closed_of(const call& c) const { return c.from != origin::global && epochs_[c.epoch].closed; }
  bool requested(const call& c) const { return c.cancel_req || c.timeout_req || closed_of(c); }
  /// The call ends without anyone's help, or someone asked it to end.
  bool can_end(const call& c) const { return finite(c.s.k) || requested(c); }

  spec read_spec(bool finite_only) {
    spec s;
    s.k = static_cast<kind>(in_.below(finite_only ? first_infinite : kind_count));
    s.arg = in_.u8();
    s.us = in_.u8();
    return s;
  }

  call& new_call(const spec& s, origin from) {
    FUZZ_TRACE("  call %zu: kind %d arg %d us %u origin %d\n", calls_.size(), static_cast<int>(s.k),
               s.arg, s.us, static_cast<int>(from));
    call& c = calls_.emplace_back();
    c.s = s;
    c.from = from;
    c.epoch = epochs_.size() - 1;
    return c;
  }

  void open_runner(std::uint8_t opt) {
    epoch_state& e = epochs_.emplace_back();
    palitra::runner_options o;
    o.name = "fuzz-" + std::to_string(epochs_.size());
    static constexpr std::chrono::nanoseconds spins[] = {0ns, 5us, 50us};
    o.caller_spin = spins[opt % 3];
    o.loop_spin = spins[(opt / 3) % 3];
    epoch_state* ep = &e;
    o.on_unhandled_error = [ep](std::exception_ptr x) {
      try {
        std::rethrow_exception(x);
      } catch (const fuzz_error&) {
        ep->unhandled_spawn.fetch_add(1, std::memory_order_relaxed);
      } catch (const post_error&) {
        ep->unhandled_post.fetch_add(1, std::memory_order_relaxed);
      } catch (...) {
        ep->unhandled_other.fetch_add(1, std::memory_order_relaxed);
      }
    };
    e.r = std::make_unique<palitra::runner>(std::move(o));
    FUZZ_CHECK(!e.r->closed(), "a new runner reports closed()");
    FUZZ_CHECK(!e.r->on_loop_thread(), "on_loop_thread() is true on the caller's thread");
  }

  int index_of(const call& c) const {
    for (std::size_t i = 0; i < calls_.size(); ++i)
      if (&calls_[i] == &c) return static_cast<int>(i);
    return -1;
  }

  // ---- outcome checks

  /// A value v returned for c: the body returned it, and it is legitimate.
  void check_value(const call& c, int v, bool req, const observed& o) {
    FUZZ_CHECK(c.rec.load() == r_returned, "a value was returned but the body did not return");
    if (c.rec.value != v) mismatch("the returned value is not the body's value", o);
    const bool alt_ok =
        c.s.k == k_with_timeout || ((c.s.k == k_swallow || c.s.k == k_poll) && req);
    if (!((v == nat(c.s.arg) && returns_nat(c.s.k)) || (v == alt(c.s.arg) && alt_ok)))
      mismatch("a value this task cannot return without (or with) cancellation", o);
  }

  /// The outcome of a top-level call (run, future::get).
  void check_outcome(const call& c, const observed& o) {
    FUZZ_TRACE("  outcome of call %d: %d v=%d (record %d)\n", index_of(c), static_cast<int>(o.k), o.v,
               c.rec.load());
    FUZZ_CHECK(c.rec.frames.load() == 0,
               "the frame is still alive after the call returned (guarantee 3)");
    const int st = c.rec.load();
    FUZZ_CHECK(st != r_started, "the call returned while its body is still running");
    switch (o.k) {
    case oc::value: check_value(c, o.v, requested(c), o); return;
    case oc::own:
      if (!(st == r_threw && throws_own(c.s.k) && o.v == c.s.arg))
        mismatch("an own exception the body did not throw", o);
      return;
    case oc::cancelled:
    case oc::timeout:
    case oc::closed: {
      const bool asked = (o.k == oc::cancelled && c.cancel_req) ||
                         (o.k == oc::timeout && c.timeout_req) ||
                         (o.k == oc::closed && closed_of(c));
      if (!asked) mismatch("a cancellation error for a cancellation nobody requested", o);
      // timeout: "the task still starts"; cancel/close may come before the start.
      if (!(st == r_cancelled || (st == r_created && o.k != oc::timeout)))
        mismatch("a cancellation error, but the body ended otherwise", o);
      return;
    }
    case oc::reentrancy:
    case oc::misuse:
    case oc::other: mismatch("an unexpected exception", o);
    }
  }

  /// A call rejected at submission: runner_closed_error, nothing ran.
  void check_rejected(call& c, const observed& o) {
    if (o.k != oc::closed) mismatch("a call on a closed runner did not throw runner_closed_error", o);
    FUZZ_CHECK(c.rec.load() == r_created, "a rejected call's body ran");
    FUZZ_CHECK(c.rec.frames.load() == 0, "a rejected call's frame is still alive");
    c.accepted.store(2);
  }

  // ---- ops

  void step(unsigned op) {
    FUZZ_TRACE("op %u (calls %zu, futures %zu, epoch %zu%s)\n", op, calls_.size(), futs_.size(),
               epochs_.size(), cur().closed ? ", closed" : "");
    switch (op) {
    case 0:
    case 1: op_run(read_spec(true), in_.flag()); break;
    case 2: op_run_timeout(read_spec(false), read_short_timeout()); break;
    case 3: op_run_timeout(read_spec(true), long_timeout); break;
    case 4:
    case 5: op_submit(read_spec(false)); break;
    case 6: op_cancel(in_.u8()); break;
    case 7: op_get(in_.u8()); break;
    case 8: op_wait(in_.u8(), 0us); break;
    case 9: {
      const unsigned i = in_.u8();
      op_wait(i, std::chrono::microseconds(in_.u8()));
      break;
    }
    case 10: op_drop(in_.u8()); break;
    case 11: op_spawn(read_spec(false)); break;
    case 12: op_post(in_.below(5)); break;
    case 13: std::this_thread::sleep_for(std::chrono::microseconds(in_.u8())); break;
    case 14: op_close(); break;
    case 15: op_reopen(in_.u8()); break;
    case 16: op_stats(); break;
    case 17: op_gather(false); break;
    case 18: op_gather(true); break;
    case 19: op_global(in_.below(4)); break;
    }
  }

  std::chrono::microseconds read_short_timeout() {
    const unsigned t = in_.u8();
    if (t == 255) return std::chrono::microseconds(-1); // already expired
    return std::chrono::microseconds(t);
  }

  call& op_run(const spec& s, bool via_callable) {
    call& c = new_call(s, origin::run);
    if (cur().closed) {
      check_rejected(c, capture([&] { return R().run(body<int>(s, frame_token(c.rec))); }));
      return c;
    }
    observed o;
    if (via_callable) {
      // f(args...) moved into the root frame: the capture lives as long as
      // the coroutine, and a move-only callable is accepted.
      o = capture([&] {
        return R().run(
            [s, tok = frame_token(c.rec)](int seven) -> task<int> {
              FUZZ_CHECK(seven == 7, "run(F&&, args...) lost its argument");
              return body<int>(s, frame_token(tok.rec()));
            },
            7);
      });
    } else {
      o = capture([&] { return R().run(body<int>(s, frame_token(c.rec))); });
    }
    c.accepted.store(1);
    check_outcome(c, o);
    return c;
  }

  template <class D> void op_run_timeout(spec s, D timeout) {
    const bool is_long = std::chrono::duration_cast<std::chrono::seconds>(timeout) >= 1s;
    if (!finite(s.k) && is_long) timeout = D(0); // a 1 h task needs a short deadline
    call& c = new_call(s, origin::run);
    c.timeout_req = !is_long || !finite(s.k);
    observed o = capture([&] { return R().run(body<int>(s, frame_token(c.rec)), timeout); });
    if (cur().closed) return check_rejected(c, o);
    c.accepted.store(1);
    check_outcome(c, o);
  }

  void op_submit(const spec& s) {
    if (futs_.size() >= max_futures) drop_slot(0);
    call& c = new_call(s, origin::submit);
    try {
      palitra::future<int> f = R().submit(body<int>(s, frame_token(c.rec)));
      FUZZ_CHECK(!cur().closed, "submit on a closed runner was accepted");
      FUZZ_CHECK(f.valid(), "a fresh future is not valid()");
      c.accepted.store(1);
      futs_.push_back(fut_slot{std::move(f), &c});
    } catch (...) {
      FUZZ_CHECK(cur().closed, "submit on an open runner threw");
      check_rejected(c, capture([]() -> int { throw; }));
    }
  }

  fut_slot* slot(unsigned i) { return futs_.empty() ? nullptr : &futs_[i % futs_.size()]; }

  void op_cancel(unsigned i) {
    fut_slot* fs = slot(i);
    if (fs == nullptr) return;
    fs->c->cancel_req = true;
    fs->f.cancel();
  }

  void after_done(fut_slot& fs) {
    FUZZ_CHECK(fs.f.ready(), "wait_for returned true but ready() is false");
    const int st = fs.c->rec.load();
    FUZZ_CHECK(st != r_started, "a future is ready while its body still runs");
    FUZZ_CHECK(st != r_created || closed_of(*fs.c),
               "a future is ready but its task never started (runner open)");
    fs.done_seen = true;
  }

  template <class D> void op_wait(unsigned i, D d) {
    fut_slot* fs = slot(i);
    if (fs == nullptr) return;
    const bool done = fs->f.wait_for(d);
    if (done) after_done(*fs);
    if (!can_end(*fs->c)) FUZZ_CHECK(!done, "a task that cannot end is ready");
    if (closed_of(*fs->c)) FUZZ_CHECK(done, "close() did not release a future");
    if (fs->done_seen) FUZZ_CHECK(fs->f.ready(), "ready() went back to false");
  }

  void op_get(unsigned i) {
    fut_slot* fs = slot(i);
    if (fs == nullptr) return;
    if (!can_end(*fs->c)) return op_wait(i, 0us); // get() would block forever
    call& c = *fs->c;
    const observed o = capture([&] { return fs->f.get(); });
    FUZZ_CHECK(!fs->f.valid(), "a future is still valid() after get()");
    FUZZ_CHECK(!fs->f.ready(), "a consumed future reports ready()");
    check_outcome(c, o);
    const observed again = capture([&] { return fs->f.get(); });
    if (again.k != oc::misuse) mismatch("a second get() did not throw palitra::error", again);
    futs_.erase(futs_.begin() + static_cast<std::ptrdiff_t>(fs - futs_.data()));
  }

  void drop_slot(std::size_t idx) {
    call& c = *futs_[idx].c;
    c.cancel_req = true; // the destructor requests cancellation
    futs_.erase(futs_.begin() + static_cast<std::ptrdiff_t>(idx));
    FUZZ_CHECK(c.rec.frames.load() == 0, "a dropped future's frame is still alive");
    const int st = c.rec.load();
    FUZZ_CHECK(st != r_started, "a dropped future's body still runs");
    FUZZ_CHECK(st != r_created || closed_of(c), "a dropped future's task never started");
  }

  void op_drop(unsigned i) {
    if (futs_.empty()) return;
    drop_slot(i % futs_.size());
  }

  void op_spawn(const spec& s) {
    call& c = new_call(s, origin::spawn);
    const observed o = capture([&] {
      R().spawn(body<void>(s, frame_token(c.rec)));
      return 0;
    });
    if (cur().closed) return check_rejected(c, o);
    if (o.k != oc::value) mismatch("spawn on an open runner threw", o);
    c.accepted.store(1);
  }

  void op_post(unsigned variant) {
    epoch_state* e = &cur();
    palitra::runner* r = e->r.get();
    call* nested = nullptr;
    bool throwing = false;
    observed o;
    switch (variant) {
    case 0:
      o = capture([&] {
        r->post([e, r, t = tracked()] {
          FUZZ_CHECK(r->on_loop_thread(), "a posted callable ran off the loop thread");
          e->posts_run.fetch_add(1, std::memory_order_relaxed);
        });
        return 0;
      });
      break;
    case 1:
      throwing = true;
      o = capture([&] {
        r->post([e, t = tracked()] {
          e->posts_run.fetch_add(1, std::memory_order_relaxed);
          throw post_error();
        });
        return 0;
      });
      break;
    case 2: {
      nested = &new_call(read_spec(false), origin::nested_spawn);
      o = capture([&] {
        r->post([e, r, c = nested, t = tracked()] {
          const observed so = capture([&] {
            r->spawn(body<void>(c->s, frame_token(c->rec)));
            return 0;
          });
          if (so.k == oc::value)
            c->accepted.store(1);
          else if (so.k == oc::closed && r->closed())
            c->accepted.store(2);
          else
            mismatch("spawn from the loop thread failed", so);
          e->posts_run.fetch_add(1, std::memory_order_relaxed);
        });
        return 0;
      });
      break;
    }
    case 3: {
      nested = &new_call(read_spec(false), origin::nested_submit);
      nested->cancel_req = true; // dropped on the loop thread: detached, cancelled
      o = capture([&] {
        r->post([e, r, c = nested, t = tracked()] {
          try {
            palitra::future<int> f = r->submit(body<int>(c->s, frame_token(c->rec)));
            c->accepted.store(1);
            const observed g = capture([&] { return f.get(); });
            if (g.k != oc::reentrancy) mismatch("future::get on its loop thread", g);
            const observed w = capture([&] { return static_cast<int>(f.wait_for(0s)); });
            if (w.k != oc::reentrancy) mismatch("future::wait_for on its loop thread", w);
          } catch (const palitra::runner_closed_error&) {
            FUZZ_CHECK(r->closed(), "submit from the loop thread rejected while open");
            c->accepted.store(2);
          }
          e->posts_run.fetch_add(1, std::memory_order_relaxed);
        });
        return 0;
      });
      break;
    }
    case 4:
      o = capture([&] {
        r->post([e, r, t = tracked()] {
          record local;
          const observed ro = capture([&] { return r->run(body<int>({}, frame_token(local))); });
          if (ro.k != oc::reentrancy) mismatch("run on the loop thread", ro);
          FUZZ_CHECK(local.frames.load() == 0 && local.load() == r_created,
                     "a rejected reentrant run left its frame or ran");
          const observed co = capture([&] {
            r->close();
            return 0;
          });
          if (co.k != oc::reentrancy) mismatch("close on the loop thread", co);
          // closed() first: if it is true, the program's close() began, and
          // that happens after its close_requested store.
          if (r->closed())
            FUZZ_CHECK(e->close_requested.load(), "a rejected close() closed the runner");
          e->posts_run.fetch_add(1, std::memory_order_relaxed);
        });
        return 0;
      });
      break;
    }
    if (e->closed) {
      if (o.k != oc::closed) mismatch("post on a closed runner did not throw", o);
      if (nested != nullptr) nested->accepted.store(2);
      return;
    }
    if (o.k != oc::value) mismatch("post on an open runner threw", o);
    ++e->posts_accepted;
    if (throwing) ++e->posts_throwing;
  }

  // ---- counters

  /// Every call of the current runner that must end has ended and been
  /// published, and every accepted call has started.
  void quiesce() {
    op_run(spec{}, false); // barrier 1: every post before it has run
    const auto deadline = clk::now() + must_end_within;
    for (call& c : calls_) {
      if (c.epoch != epochs_.size() - 1 || !c.counted()) continue;
      const int acc = c.accepted.load();
      FUZZ_CHECK(acc != 0, "a posted spawn/submit has not run after a barrier");
      if (acc != 1 || !can_end(c)) continue;
      while (c.rec.load() <= r_started) {
        FUZZ_CHECK(clk::now() < deadline, "a call that must end did not end (hang)");
        std::this_thread::sleep_for(20us);
      }
    }
    op_run(spec{}, false); // barrier 2: every end above has been published
  }

  /// Exact counters of the current runner (quiescent or closed).
  void check_counters() {
    epoch_state& e = cur();
    palitra::runner_stats want{};
    for (const call& c : calls_) {
      if (c.epoch != epochs_.size() - 1 || !c.counted() || c.accepted.load() != 1) continue;
      ++want.submitted;
      switch (c.rec.load()) {
      case r_returned: ++want.completed; break;
      case r_threw: ++want.failed; break;
      case r_cancelled: ++want.cancelled; break;
      case r_created:
        FUZZ_CHECK(e.closed, "an accepted call has not started after a barrier");
        ++want.cancelled; // rejected by close(): counted cancelled
        break;
      case r_started:
        FUZZ_CHECK(!e.closed, "close() returned while a call still runs");
        FUZZ_CHECK(!can_end(c), "a call that must end is still in flight");
        ++want.in_flight;
        break;
      }
      const bool reclaimed_on_loop = c.from == origin::spawn || c.from == origin::nested_spawn ||
                                     c.from == origin::nested_submit;
      if (reclaimed_on_loop && c.rec.load() != r_started)
        FUZZ_CHECK(c.rec.frames.load() == 0, "an ended spawned/detached frame was not freed");
    }
    if (trace_on())
      for (const call& c : calls_)
        FUZZ_TRACE("  call %d: epoch %zu origin %d kind %d accepted %d record %d frames %d\n",
                   index_of(c), c.epoch, static_cast<int>(c.from), static_cast<int>(c.s.k),
                   c.accepted.load(), c.rec.load(), c.rec.frames.load());
    want.submitted += e.g_submitted;
    want.completed += e.g_completed;
    want.failed += e.g_failed;
    want.cancelled += e.g_cancelled;
    const palitra::runner_stats s = e.r->stats();
    FUZZ_TRACE("stats: submitted %llu/%llu completed %llu/%llu failed %llu/%llu cancelled %llu/%llu "
               "in_flight %llu/%llu (palitra/model)\n",
               (unsigned long long)s.submitted, (unsigned long long)want.submitted,
               (unsigned long long)s.completed, (unsigned long long)want.completed,
               (unsigned long long)s.failed, (unsigned long long)want.failed,
               (unsigned long long)s.cancelled, (unsigned long long)want.cancelled,
               (unsigned long long)s.in_flight, (unsigned long long)want.in_flight);
    FUZZ_CHECK(s.submitted == want.submitted, "stats().submitted differs from the model");
    FUZZ_CHECK(s.completed == want.completed, "stats().completed differs from the model");
    FUZZ_CHECK(s.failed == want.failed, "stats().failed differs from the model");
    FUZZ_CHECK(s.cancelled == want.cancelled, "stats().cancelled differs from the model");
    FUZZ_CHECK(s.in_flight == want.in_flight, "stats().in_flight differs from the model");
    FUZZ_CHECK(s.submitted == s.completed + s.failed + s.cancelled + s.in_flight,
               "counters do not balance");
    FUZZ_CHECK(s.loop_iterations >= e.last.loop_iterations, "loop_iterations went backwards");
    FUZZ_CHECK(s.loop_wakeups >= e.last.loop_wakeups, "loop_wakeups went backwards");
    e.last = s;

    FUZZ_CHECK(e.posts_run.load() == e.posts_accepted, "an accepted post did not run (or ran twice)");
    std::uint64_t spawn_failures = 0;
    for (const call& c : calls_)
      if (c.epoch == epochs_.size() - 1 && c.accepted.load() == 1 &&
          (c.from == origin::spawn || c.from == origin::nested_spawn) && c.rec.load() == r_threw)
        ++spawn_failures;
    FUZZ_CHECK(e.unhandled_spawn.load() == spawn_failures,
               "on_unhandled_error did not see each failed spawned task exactly once");
    FUZZ_CHECK(e.unhandled_post.load() == e.posts_throwing,
               "on_unhandled_error did not see each throwing post exactly once");
    FUZZ_CHECK(e.unhandled_other.load() == 0, "on_unhandled_error saw a foreign exception");
  }

  void op_stats() {
    if (cur().closed) {
      const palitra::runner_stats s = R().stats();
      const palitra::runner_stats& l = cur().last;
      FUZZ_CHECK(s.submitted == l.submitted && s.completed == l.completed && s.failed == l.failed &&
                     s.cancelled == l.cancelled && s.in_flight == 0 &&
                     s.loop_iterations == l.loop_iterations,
                 "the counters of a closed runner changed");
      return;
    }
    quiesce();
    check_counters();
  }

  void op_close() {
    epoch_state& e = cur();
    const bool was_closed = e.closed;
    e.close_requested.store(true);
    e.r->close();
    e.closed = true;
    FUZZ_CHECK(e.r->closed(), "closed() is false after close()");
    if (was_closed) return op_stats(); // idempotent: nothing changed
    for (call& c : calls_)
      if (c.epoch == epochs_.size() - 1 && c.counted())
        FUZZ_CHECK(c.accepted.load() != 0, "an accepted post did not run before close() returned");
    check_counters();
    for (fut_slot& fs : futs_)
      if (fs.c->epoch == epochs_.size() - 1) {
        FUZZ_CHECK(fs.f.ready(), "close() returned but a future is not ready");
        after_done(fs);
      }
  }

  void op_reopen(std::uint8_t opt) {
    op_close();
    cur().r.reset(); // futures of this runner outlive it (get() stays valid)
    open_runner(opt);
  }

  // ---- gather

  void op_gather(bool settled) {
    const unsigned n = in_.below(4);
    const bool timed = in_.flag();
    const auto timeout = read_short_timeout();
    std::vector<call*> kids;
    std::vector<task<int>> ts;
    for (unsigned i = 0; i < n; ++i) {
      spec s = read_spec(true);
      s.arg += 256 * static_cast<int>(i); // distinct args: an error names its child
      call& c = new_call(s, origin::gather_child);
      c.timeout_req = timed;
      kids.push_back(&c);
      ts.push_back(body<int>(s, frame_token(c.rec)));
    }
    epoch_state& e = cur();
    std::vector<int> values;
    std::vector<palitra::outcome<int>> settled_out;
    const observed o = capture([&] {
      if (settled)
        settled_out = timed ? R().gather_settled(std::move(ts), timeout)
                            : R().gather_settled(std::move(ts));
      else
        values = timed ? R().gather(std::move(ts), timeout) : R().gather(std::move(ts));
      return 0;
    });
    bool some_threw = false, some_cancelled = false;
    for (call* c : kids) {
      FUZZ_CHECK(c->rec.frames.load() == 0, "a gathered task's frame outlived the gather");
      const int st = c->rec.load();
      FUZZ_CHECK(st != r_started, "a gathered task still runs after the gather returned");
      some_threw |= st == r_threw;
      some_cancelled |= st == r_cancelled;
    }
    if (e.closed) {
      if (o.k != oc::closed) mismatch("gather on a closed runner did not throw", o);
      for (call* c : kids) FUZZ_CHECK(c->rec.load() == r_created, "a rejected gather ran a task");
      return;
    }
    ++e.g_submitted;
    // A child may see cancellation only if the group was cancelled: by the
    // timeout, or (gather) by a sibling's failure.
    const bool child_req = timed || (!settled && some_threw);
    if (some_cancelled) FUZZ_CHECK(child_req, "a gathered task was cancelled for no reason");
    switch (o.k) {
    case oc::value:
      ++e.g_completed;
      if (!settled) {
        FUZZ_CHECK(values.size() == n, "gather returned the wrong number of results");
        FUZZ_CHECK(!some_threw && !some_cancelled, "gather returned values after a failure");
        for (unsigned i = 0; i < n; ++i) check_value(*kids[i], values[i], child_req, o);
      } else {
        FUZZ_CHECK(settled_out.size() == n, "gather_settled returned the wrong number of results");
        for (unsigned i = 0; i < n; ++i) {
          call& c = *kids[i];
          if (settled_out[i].has_value()) {
            check_value(c, settled_out[i].value(), child_req, o);
            continue;
          }
          const observed co = capture([&] { return settled_out[i].value(); });
          if (co.k == oc::own) {
            FUZZ_CHECK(c.rec.load() == r_threw && co.v == c.s.arg,
                       "gather_settled holds an own error its task did not throw");
          } else if (co.k == oc::cancelled && c.rec.load() == r_cancelled && timed) {
            // DESIGN.md §2: with a timeout, gather_settled throws timeout_error
            // for the whole group; a cancelled outcome means the deadline
            // passed and the group returned instead.
            mismatch("gather_settled(timeout) returned cancelled outcomes instead of "
                     "throwing timeout_error",
                     co);
          } else {
            mismatch("gather_settled holds an unexpected outcome", co);
          }
        }
      }
      return;
    case oc::own: {
      ++e.g_failed;
      FUZZ_CHECK(!settled, "gather_settled threw a task's exception");
      bool found = false;
      for (call* c : kids) found |= c->s.arg == o.v && c->rec.load() == r_threw;
      if (!found) mismatch("gather rethrew an error no task threw", o);
      return;
    }
    case oc::timeout:
      ++e.g_cancelled;
      if (!timed || !some_cancelled)
        mismatch("gather timed out although no task was cancelled by a deadline", o);
      return;
    default: mismatch("gather ended with an unexpected exception", o);
    }
  }

  // ---- the global runner (its counters are shared across inputs: not modelled)

  void op_global(unsigned sub) {
    if (sub == 3) {
      palitra::shutdown_global_runner();
      FUZZ_CHECK(!palitra::is_runner_alive(), "is_runner_alive() after shutdown_global_runner()");
      return;
    }
    const spec s = read_spec(true);
    call& c = new_call(s, origin::global);
    c.accepted.store(1);
    observed o;
    if (sub == 0) {
      o = capture([&] { return palitra::run(body<int>(s, frame_token(c.rec))); });
    } else if (sub == 1) {
      c.timeout_req = true;
      const auto t = read_short_timeout();
      o = capture([&] { return palitra::run(body<int>(s, frame_token(c.rec)), t); });
    } else {
      o = capture([&] {
        auto f = palitra::global_runner().submit(body<int>(s, frame_token(c.rec)));
        return f.get();
      });
    }
    check_outcome(c, o);
    FUZZ_CHECK(palitra::is_runner_alive(), "the global runner is not alive after a call");
  }

  // ---- end of the program

  void finish() {
    if (!cur().closed) op_close();
    for (fut_slot& fs : futs_) {
      FUZZ_CHECK(fs.f.wait_for(0s), "a future of a closed runner is not ready");
      call& c = *fs.c;
      const observed o = capture([&] { return fs.f.get(); });
      check_outcome(c, o);
    }
    futs_.clear();
    for (epoch_state& e : epochs_) e.r.reset();
    for (const call& c : calls_) {
      FUZZ_CHECK(c.rec.frames.load() == 0, "a frame outlived its runner and its future");
      FUZZ_CHECK(c.rec.load() != r_started, "a body was left running");
    }
    FUZZ_CHECK(g_tracked.load() == 0, "a posted callable's capture was not destroyed");
  }

  reader in_;
  std::deque<call> calls_;         // stable addresses: records are shared with frames
  std::deque<epoch_state> epochs_; // stable: handlers and posts point into it
  std::vector<fut_slot> futs_;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  program p(data, size);
  p.run();
  return 0;
}
