// stress scenario close_race (research/reliability.md row T3; DESIGN.md §4
// "close()").
//
// What it exercises, per round: a fresh runner (spin settings drawn from the
// seed); 0-4 spawned tasks that sleep until close() cancels them; 32 caller
// threads calling in a loop (run() of immediate / yielding / sleeping tasks,
// tasks that throw, tasks that sleep 60 s so only close() can end them,
// run(t, 10 s), submit()+get(), and submit()+cancel()+get()); and close()
// at a random moment (0-5 ms after the callers start) from another thread;
// in a third of the rounds a second thread calls close() at the same moment.
// Pass, per round:
//   - every call ends in its value, its own user_error, or
//     runner_closed_error (a cancelled future also in cancelled_error):
//     never another error, never a hang; the 60 s sleepers end only in
//     runner_closed_error;
//   - every call that starts after close() returned throws
//     runner_closed_error at submission (each caller makes two such calls;
//     submit/spawn/post are checked too);
//   - runner_stats balance, and match the ledger: completed = values,
//     failed = user errors, cancelled = closed accepted calls + accepted
//     spawns + cancelled futures;
//     submitted + gate rejections = attempts + accepted spawns;
//   - no spawned task is reported to on_unhandled_error (close() ends them);
//   - close() returns within 2 s, and the round within 10 s (x multiplier).
// Scale: 200 rounds (x0.5 under TSan and ASan); --long: x20.
#include "scenario.hpp"

namespace {

using namespace scenario;

enum op : std::uint8_t {
  op_immediate,
  op_yields,
  op_sleep,
  op_throw,
  op_forever,
  op_deadline,
  op_future,
  op_future_cancel,
  op_late, // started after close() returned
  op_count
};
const std::vector<const char*> op_names = {"immediate", "yields",        "sleep",
                                           "throw",     "forever",       "deadline",
                                           "future",    "future_cancel", "late"};

constexpr long callers = 32;

palitra::task<std::uint64_t> forever(std::uint64_t arg) {
  co_await palitra::sleep_for(60s); // only close() ends this
  co_return f(arg);
}

palitra::task<void> spawned_forever() { co_await palitra::sleep_for(60s); }

struct round_totals {
  std::uint64_t attempts = 0, values = 0, user_errors = 0, closed = 0, gate = 0, late = 0,
                cancels = 0;
  double max_close_s = 0, max_round_s = 0;
};

/// One caller: calls until it has made two calls that began after close()
/// returned.
void caller(palitra::runner& r, ledger& lg, std::uint64_t seed, long round, long t,
            const std::atomic<bool>& close_returned, const std::atomic<bool>& go) {
  thread_slot me(t);
  me.state("waiting for the start signal");
  rng g(seed, (static_cast<std::uint64_t>(round) << 16) ^ static_cast<std::uint64_t>(t));
  while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
  int late = 0, refusals = 0;
  const int burst = static_cast<int>(g.below(4));
  for (std::uint64_t i = 0; late < 2; ++i) {
    // acquire: pairs with the closer's release store after close() returned.
    const bool after_close = close_returned.load(std::memory_order_acquire);
    const std::uint64_t arg = g.next();
    const unsigned pick = static_cast<unsigned>(g.below(100));
    std::uint8_t o = pick < 25   ? op_immediate
                     : pick < 45 ? op_yields
                     : pick < 65 ? op_sleep
                     : pick < 75 ? op_throw
                     : pick < 80 ? op_forever
                     : pick < 88 ? op_deadline
                     : pick < 94 ? op_future
                                 : op_future_cancel;
    work w = random_work(g, 200us);
    const std::size_t idx =
        lg.begin(static_cast<std::size_t>(t), after_close ? std::uint8_t(op_late) : o, arg);
    std::string detail;
    kind k;
    {
      auto in = me.enter(op_names[after_close ? std::uint8_t(op_late) : o], i, arg);
      switch (o) {
      case op_immediate:
        k = outcome_of([&] { return r.run(value_task(arg, work{})); }, arg, &detail);
        break;
      case op_yields:
        w.s = shape::yields;
        k = outcome_of([&] { return r.run(value_task(arg, w)); }, arg, &detail);
        break;
      case op_sleep:
        w.s = shape::sleep;
        k = outcome_of([&] { return r.run(value_task(arg, w)); }, arg, &detail);
        break;
      case op_throw:
        k = outcome_of([&] { return r.run(throw_task(arg, w)); }, arg, &detail);
        break;
      case op_forever:
        k = outcome_of([&] { return r.run(forever(arg)); }, arg, &detail);
        break;
      case op_deadline:
        k = outcome_of([&] { return r.run(value_task(arg, w), 10s); }, arg, &detail);
        break;
      case op_future:
        k = outcome_of([&] { return r.submit(value_task(arg, w)).get(); }, arg, &detail);
        break;
      default: {
        // future::cancel() racing close(): the cancel node may be pushed
        // while the loop is stopping (G1' in core/runtime/submission.hpp).
        const auto delay = std::chrono::nanoseconds(g.range(0, 100'000));
        k = outcome_of(
            [&] {
              auto fut = r.submit(value_task(arg, w));
              spin_for(delay);
              fut.cancel();
              return fut.get();
            },
            arg, &detail);
        break;
      }
      }
    }
    if (after_close) ++late;
    lg.end(static_cast<std::size_t>(t), idx, k, detail);
    // Once refused at the gate, retry a few times at once (racing the
    // closing state), then only every 200 µs: 32 threads rethrowing in a
    // tight loop would starve the loop and closer threads of the 2 CPUs and
    // measure the scheduler, not close() (close() took up to 4.5 s so).
    if (k == kind::closed_gate && ++refusals > burst) std::this_thread::sleep_for(200us);
  }
}

void run_round(const params& p, watchdog& wd, long round, round_totals& tot,
               std::timed_mutex& dump_mutex, palitra::runner*& dump_runner) {
  rng g(p.seed, 0xc105e000000ull + static_cast<std::uint64_t>(round));
  palitra::runner_options o;
  o.name = "close_race";
  if (g.percent(50)) o.caller_spin = 0ns;
  if (g.percent(50)) o.loop_spin = 0ns;
  std::atomic<long> unhandled{0};
  o.on_unhandled_error = [&unhandled](std::exception_ptr) { unhandled.fetch_add(1); };
  const auto close_after = std::chrono::nanoseconds(g.range(0, 5'000'000));
  const bool two_closers = g.percent(33);
  const int spawns = static_cast<int>(g.below(5));

  ledger lg(op_names, callers);
  lg.allow(op_immediate, {kind::value, kind::closed_gate, kind::closed});
  lg.allow(op_yields, {kind::value, kind::closed_gate, kind::closed});
  lg.allow(op_sleep, {kind::value, kind::closed_gate, kind::closed});
  lg.allow(op_deadline, {kind::value, kind::closed_gate, kind::closed});
  lg.allow(op_future, {kind::value, kind::closed_gate, kind::closed});
  lg.allow(op_future_cancel, {kind::value, kind::cancelled, kind::closed_gate, kind::closed});
  lg.allow(op_throw, {kind::user_error, kind::closed_gate, kind::closed});
  lg.allow(op_forever, {kind::closed_gate, kind::closed});
  lg.allow(op_late, {kind::closed_gate});

  const auto t0 = steady::now();
  double close_s = 0;
  std::uint64_t spawned = 0;
  palitra::runner_stats s;
  {
    palitra::runner r(o);
    {
      std::lock_guard<std::timed_mutex> lk(dump_mutex);
      dump_runner = &r;
    }
    for (int i = 0; i < spawns; ++i) {
      r.spawn(spawned_forever());
      ++spawned;
    }
    std::atomic<bool> go{false}, close_returned{false};
    std::vector<std::thread> ths;
    for (long t = 0; t < callers; ++t)
      ths.emplace_back(caller, std::ref(r), std::ref(lg), p.seed, round, t,
                       std::cref(close_returned), std::cref(go));
    auto closer = [&](bool timed) {
      thread_slot me(callers + (timed ? 0 : 1));
      me.state("closer: waiting");
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      spin_for(close_after);
      const auto c0 = steady::now();
      {
        auto in = me.enter("runner::close", static_cast<std::uint64_t>(round), 0);
        r.close();
      }
      if (timed) close_s = std::chrono::duration<double>(steady::now() - c0).count();
      if (!r.closed()) fail("round %ld: closed() is false after close() returned", round);
      // release: every caller that reads true starts its call after close() returned.
      close_returned.store(true, std::memory_order_release);
    };
    std::thread c1(closer, true);
    std::thread c2;
    if (two_closers) c2 = std::thread(closer, false);
    go.store(true, std::memory_order_release);
    c1.join();
    if (c2.joinable()) c2.join();
    for (auto& th : ths) th.join();

    // Everything is refused after close() returned, and refused at once.
    auto refused = [&](const char* what, auto&& fn) {
      try {
        fn();
        fail("round %ld: %s on a closed runner did not throw", round, what);
      } catch (const palitra::runner_closed_error&) {
      } catch (const std::exception& e) {
        fail("round %ld: %s on a closed runner threw '%s', not runner_closed_error", round, what,
             e.what());
      }
    };
    refused("run", [&] { (void)r.run(value_task(1, work{})); });
    refused("submit", [&] { (void)r.submit(value_task(1, work{})); });
    refused("spawn", [&] { r.spawn(spawned_forever()); });
    refused("post", [&] { r.post([] {}); });
    r.close(); // idempotent
    s = r.stats();
    {
      std::lock_guard<std::timed_mutex> lk(dump_mutex);
      dump_runner = nullptr;
    }
  }
  const double round_s = std::chrono::duration<double>(steady::now() - t0).count();
  (void)wd;

  lg.finish();
  const std::uint64_t attempts = lg.calls();
  const std::uint64_t values = lg.count(kind::value), users = lg.count(kind::user_error);
  const std::uint64_t closed = lg.count(kind::closed), gate = lg.count(kind::closed_gate);
  // A spawn accepted by the gate ends in `cancelled` (close() ends it, or the
  // loop rejects it if it was popped after close() began): never completed.
  char what[64];
  std::snprintf(what, sizeof what, "close_race round %ld", round);
  const std::uint64_t cancels = lg.count(kind::cancelled);
  check_stats(what, s, values, users, closed + spawned + cancels);
  SCENARIO_CHECK(s.submitted + gate == attempts + spawned,
                 "%s: submitted %" PRIu64 " + gate rejections %" PRIu64 " != attempts %" PRIu64
                 " + spawns %" PRIu64,
                 what, s.submitted, gate, attempts, spawned);
  SCENARIO_CHECK(unhandled.load() == 0, "%s: %ld tasks ended by close() reached on_unhandled_error",
                 what, unhandled.load());
  const double m = time_multiplier();
  SCENARIO_CHECK(close_s < 2.0 * m, "%s: close() took %.3f s", what, close_s);
  SCENARIO_CHECK(round_s < 10.0 * m, "%s: the round took %.3f s", what, round_s);

  tot.attempts += attempts;
  tot.values += values;
  tot.user_errors += users;
  tot.closed += closed;
  tot.gate += gate;
  tot.cancels += cancels;
  tot.late += lg.count(op_late, kind::closed_gate);
  tot.max_close_s = std::max(tot.max_close_s, close_s);
  tot.max_round_s = std::max(tot.max_round_s, round_s);
}

} // namespace

int main(int argc, char** argv) {
  const params p = parse(argc, argv);
  const long rounds = p.rounds_or(200, 5);
  const auto start = steady::now();
  print_header("close_race", p, callers, "until-close",
               "rounds=" + std::to_string(rounds) + " close_at=0-5ms");
  watchdog wd(p, "close_race", {10s, 20s, 240s});
  std::timed_mutex dump_mutex;
  palitra::runner* dump_runner = nullptr;
  std::atomic<long> current_round{0};
  wd.on_dump([&](FILE* out) {
    std::fprintf(out, "  round %ld\n", current_round.load());
    // try_lock: the dump must not wait for a round that is itself stuck.
    if (dump_mutex.try_lock_for(100ms)) {
      if (dump_runner != nullptr)
        std::fprintf(out, "  runner: %s closed=%d\n", stats_line(dump_runner->stats()).c_str(),
                     dump_runner->closed() ? 1 : 0);
      dump_mutex.unlock();
    }
  });
  round_totals tot;
  wd.phase("rounds");
  for (long i = 0; i < rounds && failures().load() == 0; ++i) {
    current_round.store(i);
    run_round(p, wd, i, tot, dump_mutex, dump_runner);
  }
  wd.on_dump(nullptr);
  say(stdout,
      "  rounds=%ld attempts=%" PRIu64 " values=%" PRIu64 " user_errors=%" PRIu64
      " cancelled=%" PRIu64 " closed_in_flight=%" PRIu64 " closed_at_gate=%" PRIu64
      " late_refused=%" PRIu64
      " max_close=%.3fs max_round=%.3fs\n",
      rounds, tot.attempts, tot.values, tot.user_errors, tot.cancels, tot.closed, tot.gate, tot.late,
      tot.max_close_s, tot.max_round_s);
  return finish("close_race", p, start,
                "rounds=" + std::to_string(rounds) + " calls=" + std::to_string(tot.attempts) +
                    " values=" + std::to_string(tot.values) +
                    " closed=" + std::to_string(tot.closed + tot.gate));
}
