// stress scenario thread_churn (research/reliability.md row T5).
//
// What it exercises: thousands of short-lived caller threads, started 50 at
// a time; each makes 1-3 calls and exits, so caller stacks (and the
// completion slots on them) are reused at the same addresses by the next
// batch, and the loop keeps seeing producers it has never seen before. Two
// thirds of the threads call an explicit runner, one third palitra::run
// (the global runner). Calls: value tasks of every shape (75 %), user_error
// (10 %), run(t, d) with d shorter than the sleep (5 %: timeout_error), and
// submit()+get() (10 %: the future lives and dies on the short-lived thread).
// Pass: every value is f(arg), every exception the call's own, one outcome
// per call, both runners' stats balance and match the ledger exactly;
// resident memory after the run is within 64 MB of what it was after the
// first tenth of the batches (plain build only: sanitizer allocators keep
// quarantines).
// Scale: 20,000 threads (x0.5 under TSan and ASan); --long: x20.
#include <unistd.h>

#include <fstream>

#include "scenario.hpp"

namespace {

using namespace scenario;

enum op : std::uint8_t {
  op_r_value,
  op_r_throw,
  op_r_timeout,
  op_r_future,
  op_g_value,
  op_g_throw,
  op_g_timeout,
  op_g_future,
  op_count
};
const std::vector<const char*> op_names = {"r.value",  "r.throw",  "r.timeout", "r.future",
                                           "g.value",  "g.throw",  "g.timeout", "g.future"};
constexpr int global_offset = op_g_value - op_r_value;

long rss_kb() {
  std::ifstream f("/proc/self/statm");
  long size = 0, resident = 0;
  f >> size >> resident;
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

void one_thread(palitra::runner& r, ledger& lg, std::uint64_t seed, std::size_t id) {
  thread_slot me(static_cast<long>(id));
  rng g(seed, id);
  const bool global = g.below(3) == 0;
  const int calls = static_cast<int>(g.range(1, 3));
  palitra::runner& target = global ? palitra::global_runner() : r;
  for (int i = 0; i < calls; ++i) {
    const std::uint64_t arg = g.next();
    const unsigned pick = static_cast<unsigned>(g.below(100));
    const std::uint8_t base = pick < 75   ? op_r_value
                              : pick < 85 ? op_r_throw
                              : pick < 90 ? op_r_timeout
                                          : op_r_future;
    const std::uint8_t o = static_cast<std::uint8_t>(base + (global ? global_offset : 0));
    const work w = random_work(g, 100us);
    const std::size_t idx = lg.begin(id, o, arg);
    std::string detail;
    kind k;
    {
      auto in = me.enter(op_names[o], static_cast<std::uint64_t>(i), arg);
      switch (base) {
      case op_r_value:
        k = outcome_of([&] { return global ? palitra::run(value_task(arg, w)) : r.run(value_task(arg, w)); },
                       arg, &detail);
        break;
      case op_r_throw:
        k = outcome_of([&] { return target.run(throw_task(arg, w)); }, arg, &detail);
        break;
      case op_r_timeout: {
        work s;
        s.s = shape::sleep;
        s.sleep = std::chrono::nanoseconds(g.range(20'000, 100'000));
        const auto d = std::chrono::nanoseconds(g.range(0, s.sleep.count() - 10'000));
        k = outcome_of([&] { return target.run(value_task(arg, s), d); }, arg, &detail);
        break;
      }
      default:
        k = outcome_of([&] { return target.submit(value_task(arg, w)).get(); }, arg, &detail);
        break;
      }
    }
    lg.end(id, idx, k, detail);
  }
}

} // namespace

int main(int argc, char** argv) {
  const params p = parse(argc, argv);
  constexpr long batch = 50;
  const long threads = p.rounds_or(20000, batch) / batch * batch;
  const long batches = threads / batch;
  const auto start = steady::now();
  print_header("thread_churn", p, threads, "1-3/thread",
               "batch=" + std::to_string(batch) + " batches=" + std::to_string(batches));
  watchdog wd(p, "thread_churn", {10s, 20s, 120s});

  ledger lg(op_names, static_cast<std::size_t>(threads));
  for (std::uint8_t base = 0; base < op_count; base = static_cast<std::uint8_t>(base + global_offset)) {
    lg.allow(static_cast<std::uint8_t>(base + op_r_value), {kind::value});
    lg.allow(static_cast<std::uint8_t>(base + op_r_throw), {kind::user_error});
    lg.allow(static_cast<std::uint8_t>(base + op_r_timeout), {kind::timeout});
    lg.allow(static_cast<std::uint8_t>(base + op_r_future), {kind::value});
  }

  long rss_early = 0, rss_end = 0;
  palitra::runner_stats rs, gs;
  {
    palitra::runner_options o;
    o.name = "thread_churn";
    palitra::runner r(o);
    std::atomic<long> current_batch{0};
    wd.on_dump([&](FILE* out) {
      std::fprintf(out, "  batch %ld of %ld\n  runner: %s\n", current_batch.load(), batches,
                   stats_line(r.stats()).c_str());
    });
    wd.phase("batches");
    for (long b = 0; b < batches; ++b) {
      current_batch.store(b);
      std::vector<std::thread> ths;
      ths.reserve(batch);
      for (long i = 0; i < batch; ++i)
        ths.emplace_back(one_thread, std::ref(r), std::ref(lg), p.seed,
                         static_cast<std::size_t>(b * batch + i));
      for (auto& th : ths) th.join();
      if (b == std::max(0L, batches / 10 - 1)) rss_early = rss_kb();
    }
    rss_end = rss_kb();
    wd.on_dump(nullptr);
    rs = r.stats();
    gs = palitra::global_runner().stats();
  }

  lg.finish();
  auto sum = [&](std::uint8_t first, kind k) {
    return lg.count(first, k) + lg.count(static_cast<std::uint8_t>(first + 1), k) +
           lg.count(static_cast<std::uint8_t>(first + 2), k) +
           lg.count(static_cast<std::uint8_t>(first + 3), k);
  };
  check_stats("thread_churn runner", rs, sum(op_r_value, kind::value),
              sum(op_r_value, kind::user_error), sum(op_r_value, kind::timeout));
  check_stats("thread_churn global runner", gs, sum(op_g_value, kind::value),
              sum(op_g_value, kind::user_error), sum(op_g_value, kind::timeout));
  const long growth_kb = rss_end - rss_early;
#if !defined(PALITRA_TSAN) && !defined(PALITRA_ASAN)
  SCENARIO_CHECK(growth_kb < 64 * 1024, "resident memory grew by %ld kB over the run", growth_kb);
#endif
  say(stdout, "  outcomes by op:\n");
  lg.print(stdout, "    ");
  say(stdout, "  runner: %s\n  global: %s\n  rss: %ld kB after the first tenth, %ld kB at the end\n",
      stats_line(rs).c_str(), stats_line(gs).c_str(), rss_early, rss_end);
  return finish("thread_churn", p, start,
                "threads=" + std::to_string(threads) + " calls=" + std::to_string(lg.calls()) +
                    " values=" + std::to_string(lg.count(kind::value)) +
                    " rss_growth_kb=" + std::to_string(growth_kb));
}
