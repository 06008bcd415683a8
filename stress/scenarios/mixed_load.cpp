// stress scenario mixed_load (research/reliability.md row T1).
//
// What it exercises: 64 caller threads making many calls on ONE runner, the
// calls mixed per call from the thread's own seeded stream:
//   75 %  run() of a value task: immediate, 1-3 yields, a 0-100 µs timer, a
//         child task, the callable overload (lambda captures owned by the
//         frame), or run(t, 10 s) with a deadline that never expires
//   10 %  the task throws user_error(arg) (immediately, after suspending, or
//         from a child task)
//   10 %  run(t, d) with d shorter than the task's 20-100 µs sleep: must
//         throw timeout_error, never early
//    5 %  submit() then future::cancel() from the caller thread after a
//         random delay: cancelled_error, or the value if it finished first
//         (value <=> the task reached co_return)
// The runner's spin settings are drawn from the seed (0 forces every caller
// and the loop through the sleep/wake path).
// Pass: every value is f(arg); every exception is the call's own; one
// outcome per call, allowed for its op; runner_stats balance and match the
// ledger bucket for bucket (completed = values, failed = user errors,
// cancelled = timeouts + cancellations).
// Options: --threads N; --only OP / --skip OP (an op name from op_names) to
// isolate a failure. --rounds N sets the calls per thread.
// Scale: 64 threads x 3,000 calls (x0.5 under TSan and ASan);
// --long: x20.
#include <sched.h>

#include "scenario.hpp"

namespace {

using namespace scenario;

enum op : std::uint8_t {
  op_immediate,
  op_yields,
  op_sleep,
  op_nested,
  op_callable,
  op_long_deadline,
  op_throw,
  op_timeout,
  op_cancel,
  op_count
};
const std::vector<const char*> op_names = {"immediate", "yields",   "sleep",
                                           "nested",    "callable", "long_deadline",
                                           "throw",     "timeout",  "cancel"};

struct config {
  long threads = 64;
  long calls = 3000; // per thread
  int only = -1;    // --only OP: every call is that op (to isolate a failure)
  int skip = -1;    // --skip OP: that op's share goes to the value ops
};

/// value_task that marks `finished` right before co_return.
palitra::task<std::uint64_t> flagged_task(std::uint64_t arg, work w, std::uint8_t* finished) {
  if (w.s != shape::immediate) co_await do_work(w);
  *finished = 1; // nothing after this line can throw
  co_return f(arg);
}

void caller(palitra::runner& r, ledger& lg, const params& p, const config& c, long t,
            std::atomic<long>& early_timeouts) {
  thread_slot me(t);
  rng g(p.seed, static_cast<std::uint64_t>(t) + 1);
  for (long i = 0; i < c.calls; ++i) {
    const std::uint64_t arg = g.next();
    const unsigned pick = static_cast<unsigned>(g.below(100));
    std::uint8_t o;
    if (pick < 10)
      o = op_throw;
    else if (pick < 20)
      o = op_timeout;
    else if (pick < 25)
      o = op_cancel;
    else
      o = static_cast<std::uint8_t>(g.below(op_throw)); // one of the value ops
    if (o == c.skip) o = static_cast<std::uint8_t>(g.below(op_throw));
    if (c.only >= 0) o = static_cast<std::uint8_t>(c.only);
    const work w = random_work(g, 100us);
    const std::size_t idx = lg.begin(static_cast<std::size_t>(t), o, arg);
    std::string detail;
    kind k;
    {
      auto in = me.enter(op_names[o], static_cast<std::uint64_t>(i), arg);
      switch (o) {
      case op_immediate:
        k = outcome_of([&] { return r.run(value_task(arg, work{})); }, arg, &detail);
        break;
      case op_yields: {
        work y = w;
        y.s = shape::yields;
        k = outcome_of([&] { return r.run(value_task(arg, y)); }, arg, &detail);
        break;
      }
      case op_sleep: {
        work s = w;
        s.s = shape::sleep;
        k = outcome_of([&] { return r.run(value_task(arg, s)); }, arg, &detail);
        break;
      }
      case op_nested: {
        work n = w;
        n.s = shape::nested;
        k = outcome_of([&] { return r.run(value_task(arg, n)); }, arg, &detail);
        break;
      }
      case op_callable: {
        // The lambda's captures live in the root frame (DESIGN.md §2: the
        // callable is moved into the frame); the body reads them after a
        // suspension, when this statement's temporaries are long gone.
        const std::uint64_t mask = g.next();
        k = outcome_of(
            [&] {
              return r.run(
                  [mask, w](std::uint64_t a) -> palitra::task<std::uint64_t> {
                    co_await do_work(w);
                    co_return f(a ^ mask);
                  },
                  arg ^ mask);
            },
            arg, &detail);
        break;
      }
      case op_long_deadline:
        k = outcome_of([&] { return r.run(value_task(arg, w), 10s); }, arg, &detail);
        break;
      case op_throw:
        k = outcome_of([&] { return r.run(throw_task(arg, w)); }, arg, &detail);
        break;
      case op_timeout: {
        // The root deadline is taken before the task starts and is shorter
        // than its sleep, so the timeout fires first: timeout_error always.
        work s;
        s.s = shape::sleep;
        s.sleep = std::chrono::nanoseconds(g.range(20'000, 100'000));
        const auto d = std::chrono::nanoseconds(g.range(0, s.sleep.count() - 10'000));
        const auto t0 = steady::now();
        k = outcome_of([&] { return r.run(value_task(arg, s), d); }, arg, &detail);
        if (k == kind::timeout && steady::now() - t0 < d) early_timeouts.fetch_add(1);
        break;
      }
      case op_cancel: {
        const unsigned how = static_cast<unsigned>(g.below(4));
        const auto delay = std::chrono::nanoseconds(g.range(0, 50'000));
        const bool twice = g.percent(20);
        std::uint8_t finished = 0; // written on the loop; read after get()
        k = outcome_of(
            [&]() -> std::uint64_t {
              auto fut = r.submit(flagged_task(arg, w, &finished));
              switch (how) {
              case 0: break;                 // cancel at once
              case 1: sched_yield(); break;  // let the loop pick it up
              case 2: spin_for(delay); break;
              case 3: (void)fut.wait_for(delay); break;
              }
              fut.cancel();
              if (twice) fut.cancel(); // idempotent
              const std::uint64_t v = fut.get();
              if (fut.valid()) fail("future still valid after get()");
              return v;
            },
            arg, &detail);
        // A value the task returned before the cancel landed is never
        // discarded, and no value appears without the task finishing.
        if ((k == kind::value) != (finished != 0))
          fail("thread %ld call %ld: cancel op ended in %s but the task %s", t, i, kind_name(k),
               finished != 0 ? "had returned its value" : "never returned");
        break;
      }
      default: k = kind::other_error; detail = "bad op"; break;
      }
    }
    lg.end(static_cast<std::size_t>(t), idx, k, detail);
  }
}

} // namespace

int main(int argc, char** argv) {
  const params p = parse(argc, argv);
  config c;
  c.threads = std::stol(p.opt("--threads", "64"));
  c.calls = p.rounds_or(3000, 10);
  auto op_named = [&](const char* opt_name) {
    const std::string name = p.opt(opt_name);
    if (name.empty()) return -1;
    for (std::size_t i = 0; i < op_names.size(); ++i)
      if (name == op_names[i]) return static_cast<int>(i);
    usage(argv[0], name.c_str());
  };
  c.only = op_named("--only");
  c.skip = op_named("--skip");
  rng g(p.seed);
  palitra::runner_options o;
  o.name = "mixed_load";
  const unsigned spin_pick = static_cast<unsigned>(g.below(4));
  o.caller_spin = spin_pick == 0 ? 0ns : spin_pick == 1 ? 5us : o.caller_spin;
  o.loop_spin = g.percent(50) ? 0ns : o.loop_spin;

  const auto start = steady::now();
  print_header("mixed_load", p, c.threads, std::to_string(c.threads * c.calls),
               "calls_per_thread=" + std::to_string(c.calls) +
                   " caller_spin_ns=" + std::to_string(o.caller_spin.count()) +
                   " loop_spin_ns=" + std::to_string(o.loop_spin.count()) +
                   (c.only >= 0 ? std::string(" only=") + op_names[c.only] : std::string()) +
                   (c.skip >= 0 ? std::string(" skip=") + op_names[c.skip] : std::string()));

  watchdog wd(p, "mixed_load", {10s, 20s, 120s});
  ledger lg(op_names, static_cast<std::size_t>(c.threads));
  for (std::uint8_t v = 0; v < op_throw; ++v) lg.allow(v, {kind::value});
  lg.allow(op_throw, {kind::user_error});
  lg.allow(op_timeout, {kind::timeout});
  lg.allow(op_cancel, {kind::value, kind::cancelled});
  for (long t = 0; t < c.threads; ++t) lg.reserve(static_cast<std::size_t>(t), c.calls);

  std::atomic<long> early_timeouts{0};
  palitra::runner_stats s;
  {
    palitra::runner r(o);
    wd.on_dump([&r](FILE* out) { std::fprintf(out, "  runner: %s\n", stats_line(r.stats()).c_str()); });
    wd.phase("calls");
    std::vector<std::thread> threads;
    for (long t = 0; t < c.threads; ++t)
      threads.emplace_back(caller, std::ref(r), std::ref(lg), std::cref(p), std::cref(c), t,
                           std::ref(early_timeouts));
    for (auto& th : threads) th.join();
    wd.phase("checks");
    s = r.stats();
    wd.on_dump(nullptr);
    r.close();
  }

  std::vector<std::size_t> expected(static_cast<std::size_t>(c.threads),
                                    static_cast<std::size_t>(c.calls));
  lg.finish(&expected);
  check_stats("mixed_load", s, lg.count(kind::value), lg.count(kind::user_error),
              lg.count(kind::timeout) + lg.count(kind::cancelled));
  SCENARIO_CHECK(s.submitted == static_cast<std::uint64_t>(c.threads * c.calls),
                 "submitted=%" PRIu64 " calls=%ld", s.submitted, c.threads * c.calls);
  SCENARIO_CHECK(early_timeouts.load() == 0, "%ld timeout_errors came before their deadline",
                 early_timeouts.load());

  say(stdout, "  outcomes by op:\n");
  lg.print(stdout, "    ");
  say(stdout, "  runner: %s\n", stats_line(s).c_str());
  return finish("mixed_load", p, start,
                "calls=" + std::to_string(lg.calls()) +
                    " values=" + std::to_string(lg.count(kind::value)) +
                    " user_errors=" + std::to_string(lg.count(kind::user_error)) +
                    " timeouts=" + std::to_string(lg.count(kind::timeout)) +
                    " cancelled=" + std::to_string(lg.count(kind::cancelled)));
}
