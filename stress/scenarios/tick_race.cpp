// stress scenario tick_race (research/reliability.md row T2; DESIGN.md §4
// "Completion and timeout (or cancellation) in the same loop tick").
//
// What it exercises: a task whose completion lands on the same deadline as
// its call's timeout, thousands of times, so that the loop often finds both
// due in one tick. Three variants, each on a fresh runner, each with the
// caller/loop spin phases on (defaults) and off (every wait sleeps):
//   root      run(t, d); t sleeps until D + jitter, where D = now + d is
//             taken just before run() (so D is the run() deadline up to the
//             few ns between the two clock reads; jitter 0, ±2 µs, or up
//             to 20 µs early)
//   inner     run(u); u does co_await with_timeout(t, d), t sleeping until
//             the same instant as with_timeout's deadline (± jitter)
//   cpu       run(t, d); t burns the CPU until D + jitter (the loop cannot
//             fire the timer meanwhile), then in half the calls yields once
// d is 0-200 µs (5 % of calls: d = 0, the "already expired" rule).
// Every task sets its call's `finished` flag right before co_return.
// Pass, per call: exactly one of value / timeout_error; finished <=> value
// (a value published first is never discarded, and no value appears without
// the task finishing); a timeout never ends the call before d elapsed; a
// sleep never returns before its deadline. Per variant: value + timeout =
// calls, and runner_stats match (root/cpu: timeouts are `cancelled`; inner:
// with_timeout's timeout_error is the task's own exception, so `failed`).
// Scale: 32 threads x 400 calls x 6 variants (x0.5 under TSan and ASan).
#include "scenario.hpp"

namespace {

using namespace scenario;

enum variant : int { v_root, v_inner, v_cpu, v_count };
const char* const variant_names[] = {"root", "inner", "cpu"};

enum op : std::uint8_t { op_call };

struct totals {
  std::atomic<long> early_timeout{0}, early_sleep{0}, discarded{0}, phantom{0};
};

/// Sleeps until `until`, then marks `finished` and returns f(arg).
palitra::task<std::uint64_t> sleeper(std::uint64_t arg, steady::time_point until,
                                     std::uint8_t* finished) {
  co_await palitra::sleep_until(until);
  *finished = 1; // nothing after this line can throw
  co_return f(arg);
}

/// inner: the with_timeout deadline and the sleep end at the same instant.
palitra::task<std::uint64_t> inner_race(std::uint64_t arg, std::chrono::nanoseconds d,
                                        std::chrono::nanoseconds jitter, std::uint8_t* finished,
                                        steady::time_point* sleep_end) {
  *sleep_end = steady::now() + d + jitter;
  co_return co_await palitra::with_timeout(sleeper(arg, *sleep_end, finished), d);
}

/// cpu: holds the loop until `until`, then optionally yields once.
palitra::task<std::uint64_t> burner(std::uint64_t arg, steady::time_point until, bool yield_after,
                                    std::uint8_t* finished) {
  while (steady::now() < until) {
  }
  if (yield_after) co_await palitra::yield();
  *finished = 1;
  co_return f(arg);
}

struct variant_result {
  long values = 0, timeouts = 0;
  double secs = 0;
};

variant_result run_variant(const params& p, watchdog& wd, variant v, bool spin, long threads,
                           long calls) {
  palitra::runner_options o;
  o.name = "tick_race";
  if (!spin) o.caller_spin = o.loop_spin = 0ns;
  ledger lg({"call"}, static_cast<std::size_t>(threads));
  lg.allow(op_call, {kind::value, kind::timeout});
  totals tot;
  const auto t0 = steady::now();
  palitra::runner_stats s;
  {
    palitra::runner r(o);
    wd.on_dump([&r, v, spin](FILE* out) {
      std::fprintf(out, "  variant %s spin=%d runner: %s\n", variant_names[v], spin ? 1 : 0,
                   stats_line(r.stats()).c_str());
    });
    std::vector<std::thread> ths;
    for (long t = 0; t < threads; ++t) {
      lg.reserve(static_cast<std::size_t>(t), calls);
      ths.emplace_back([&, t] {
        thread_slot me(t);
        rng g(p.seed, (static_cast<std::uint64_t>(v) << 40) ^
                          (static_cast<std::uint64_t>(spin) << 32) ^ static_cast<std::uint64_t>(t));
        std::vector<std::uint8_t> finished(static_cast<std::size_t>(calls), 0);
        for (long i = 0; i < calls; ++i) {
          const std::uint64_t arg = g.next();
          const auto d = g.percent(5) ? 0ns : std::chrono::nanoseconds(g.range(1'000, 200'000));
          // 0 (the same instant), ±2 µs (usually one tick), or up to 20 µs
          // early (the loop may or may not tick in between).
          const unsigned jp = static_cast<unsigned>(g.below(3));
          const auto jitter = jp == 0   ? 0ns
                              : jp == 1 ? std::chrono::nanoseconds(g.range(-2'000, 2'000))
                                        : std::chrono::nanoseconds(g.range(-20'000, 0));
          const bool yield_after = g.percent(50);
          std::uint8_t* fin = &finished[static_cast<std::size_t>(i)];
          const std::size_t idx = lg.begin(static_cast<std::size_t>(t), op_call, arg);
          std::string detail;
          kind k;
          steady::time_point sleep_end{};
          const auto before = steady::now();
          {
            auto in = me.enter(variant_names[v], static_cast<std::uint64_t>(i), arg);
            switch (v) {
            case v_root:
              sleep_end = steady::now() + d + jitter;
              k = outcome_of([&] { return r.run(sleeper(arg, sleep_end, fin), d); }, arg,
                             &detail);
              break;
            case v_inner:
              k = outcome_of([&] { return r.run(inner_race(arg, d, jitter, fin, &sleep_end)); },
                             arg, &detail);
              break;
            default:
              k = outcome_of(
                  [&] { return r.run(burner(arg, steady::now() + d + jitter, yield_after, fin), d); },
                  arg, &detail);
              break;
            }
          }
          const auto after = steady::now();
          lg.end(static_cast<std::size_t>(t), idx, k, detail);
          const bool fin_set = *fin != 0;
          if (k == kind::value && !fin_set) tot.phantom.fetch_add(1);
          if (k == kind::timeout && fin_set) {
            // The task reached co_return, so its value was published first:
            // the loop must not turn it into a timeout.
            if (tot.discarded.fetch_add(1) < 5)
              fail("variant %s spin=%d thread %ld call %ld: value discarded for timeout_error "
                   "(d=%lld ns jitter=%lld ns)",
                   variant_names[v], spin ? 1 : 0, t, i, static_cast<long long>(d.count()),
                   static_cast<long long>(jitter.count()));
          }
          if (k == kind::timeout && after - before < d) tot.early_timeout.fetch_add(1);
          if (k == kind::value && v != v_cpu && after < sleep_end) tot.early_sleep.fetch_add(1);
        }
      });
    }
    for (auto& th : ths) th.join();
    s = r.stats();
    wd.on_dump(nullptr);
  }
  variant_result res;
  res.secs = std::chrono::duration<double>(steady::now() - t0).count();
  std::vector<std::size_t> expected(static_cast<std::size_t>(threads),
                                    static_cast<std::size_t>(calls));
  lg.finish(&expected);
  res.values = static_cast<long>(lg.count(kind::value));
  res.timeouts = static_cast<long>(lg.count(kind::timeout));
  const std::string what = std::string("tick_race/") + variant_names[v] + (spin ? "/spin" : "/nospin");
  SCENARIO_CHECK(res.values + res.timeouts == threads * calls, "%s: values %ld + timeouts %ld != %ld",
                 what.c_str(), res.values, res.timeouts, threads * calls);
  if (v == v_inner)
    check_stats(what.c_str(), s, lg.count(kind::value), lg.count(kind::timeout), 0);
  else
    check_stats(what.c_str(), s, lg.count(kind::value), 0, lg.count(kind::timeout));
  SCENARIO_CHECK(tot.phantom.load() == 0, "%s: %ld values without the task finishing",
                 what.c_str(), tot.phantom.load());
  SCENARIO_CHECK(tot.discarded.load() == 0, "%s: %ld published values discarded", what.c_str(),
                 tot.discarded.load());
  SCENARIO_CHECK(tot.early_timeout.load() == 0, "%s: %ld timeouts before the deadline",
                 what.c_str(), tot.early_timeout.load());
  SCENARIO_CHECK(tot.early_sleep.load() == 0, "%s: %ld sleeps ended before their deadline",
                 what.c_str(), tot.early_sleep.load());
  say(stdout, "  %-6s spin=%d calls=%ld value=%ld timeout=%ld  %s  %.2fs\n", variant_names[v],
      spin ? 1 : 0, threads * calls, res.values, res.timeouts, stats_line(s).c_str(), res.secs);
  return res;
}

} // namespace

int main(int argc, char** argv) {
  const params p = parse(argc, argv);
  const long threads = std::stol(p.opt("--threads", "32"));
  const long calls = p.rounds_or(400, 10);
  const auto start = steady::now();
  print_header("tick_race", p, threads, std::to_string(threads * calls * v_count * 2),
               "calls_per_thread_per_variant=" + std::to_string(calls) +
                   " variants=root,inner,cpu x spin,nospin");
  watchdog wd(p, "tick_race", {10s, 20s, 120s});
  long values = 0, timeouts = 0;
  for (int spin = 1; spin >= 0; --spin)
    for (int v = 0; v < v_count; ++v) {
      wd.phase(variant_names[v]);
      const auto r = run_variant(p, wd, static_cast<variant>(v), spin != 0, threads, calls);
      values += r.values;
      timeouts += r.timeouts;
    }
  return finish("tick_race", p, start,
                "calls=" + std::to_string(values + timeouts) + " values=" + std::to_string(values) +
                    " timeouts=" + std::to_string(timeouts));
}
