// stress scenario global_race (research/reliability.md row T4; DESIGN.md §2
// global_runner / shutdown_global_runner, §4 "Global runner").
//
// What it exercises:
//   - lazy creation of the global runner, raced by 64 threads released at
//     once in a fresh process, hundreds of times: the parent re-executes
//     itself (posix_spawn of /proc/self/exe with --child: fork + exec in one
//     call, and no fork-without-exec, which ThreadSanitizer cannot follow,
//     reliability.md c2.6) and runs the children a few at a time;
//   - in every child and then in the parent itself, shutdown_global_runner()
//     racing calls from several threads.
// A child, phase 1 (first use): is_runner_alive() is false before; 64
//   threads wait at a barrier, then each makes its first call through
//   palitra::run (or global_runner().run for a quarter of them) and 2 more.
//   Pass: every thread saw the same global_runner() address, every task ran
//   on the same loop thread, and that runner's stats count exactly the 192
//   calls (completed = values, failed = user errors) with nothing in flight.
// Phase 2 (shutdown racing calls): 8 threads call global_runner().run(...)
//   while 2 threads call shutdown_global_runner() at random moments. Each
//   call records the runner it used. Pass: every call ends in its value or
//   runner_closed_error; each runner used is closed at the end (except the
//   current one); for every runner, its stats equal exactly the calls the
//   ledger attributes to it; runners created <= shutdowns + 1.
// Phase 3: the same race through palitra::run itself (value or
//   runner_closed_error only), then a final palitra::run must succeed.
// The parent checks each child's exit status (a child that hangs is killed
// after its limit and reported with its seed and replay command).
// Scale: 200 children (x0.5 under TSan and ASan), 4 at a time; the parent's own
//   phase 2 is 16 callers x 300 calls.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <map>
#include <set>

#include "scenario.hpp"

extern char** environ;

namespace {

using namespace scenario;

enum op : std::uint8_t { op_value, op_throw, op_count };
const std::vector<const char*> op_names = {"value", "throw"};

/// Does `w`, records the thread it ran on, returns f(arg).
palitra::task<std::uint64_t> where_task(std::uint64_t arg, work w, std::thread::id* loop_id) {
  *loop_id = std::this_thread::get_id();
  if (w.s != shape::immediate) co_await do_work(w);
  co_return f(arg);
}

struct sizes {
  long first_threads = 64, first_calls = 3;
  long race_callers = 8, race_calls = 40, shutdowns = 3; // shutdowns per shutdown thread
};

struct phase_counts {
  std::uint64_t calls = 0, values = 0, closed = 0, runners = 0, shutdowns = 0;
};

// ---- phase 1 ------------------------------------------------------------------

void first_use(const params& p, const sizes& z, phase_counts& pc) {
  if (palitra::is_runner_alive()) fail("phase 1: is_runner_alive() before the first use");
  const auto T = static_cast<std::size_t>(z.first_threads);
  ledger lg(op_names, T);
  lg.allow(op_value, {kind::value});
  lg.allow(op_throw, {kind::user_error});
  std::vector<palitra::runner*> seen(T, nullptr);
  std::vector<std::thread::id> loop_ids(T * static_cast<std::size_t>(z.first_calls));
  std::atomic<long> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> ths;
  for (std::size_t t = 0; t < T; ++t)
    ths.emplace_back([&, t] {
      thread_slot me(static_cast<long>(t));
      rng g(p.seed, 0x1000 + t);
      me.state("at the start barrier");
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      const bool via_global = g.percent(25);
      for (long i = 0; i < z.first_calls; ++i) {
        const std::uint64_t arg = g.next();
        const bool throws = i > 0 && g.percent(10);
        const work w = random_work(g, 50us);
        const std::size_t idx = lg.begin(t, throws ? op_throw : op_value, arg);
        std::thread::id* lid = &loop_ids[t * static_cast<std::size_t>(z.first_calls) +
                                         static_cast<std::size_t>(i)];
        std::string detail;
        kind k;
        {
          auto in = me.enter(i == 0 ? "first palitra::run" : "palitra::run",
                             static_cast<std::uint64_t>(i), arg);
          if (throws) {
            *lid = {};
            k = outcome_of([&] { return palitra::run(throw_task(arg, w)); }, arg, &detail);
          } else if (i == 0 && via_global) {
            k = outcome_of([&] { return palitra::global_runner().run(where_task(arg, w, lid)); },
                           arg, &detail);
          } else {
            k = outcome_of([&] { return palitra::run(where_task(arg, w, lid)); }, arg, &detail);
          }
        }
        lg.end(t, idx, k, detail);
        if (i == 0) seen[t] = &palitra::global_runner();
      }
    });
  while (ready.load() < static_cast<long>(T)) std::this_thread::yield();
  go.store(true, std::memory_order_release);
  for (auto& th : ths) th.join();

  lg.finish();
  palitra::runner* const r = &palitra::global_runner();
  for (std::size_t t = 0; t < T; ++t)
    if (seen[t] != r) {
      fail("phase 1: thread %zu saw global runner %p, thread 0..end see %p: more than one was "
           "created",
           t, static_cast<void*>(seen[t]), static_cast<void*>(r));
      break;
    }
  std::set<std::thread::id> ids;
  for (const auto& id : loop_ids)
    if (id != std::thread::id{}) ids.insert(id);
  SCENARIO_CHECK(ids.size() == 1, "phase 1: tasks ran on %zu different loop threads", ids.size());
  SCENARIO_CHECK(palitra::is_runner_alive(), "phase 1: is_runner_alive() is false after use");
  const auto s = r->stats();
  check_stats("phase 1 (first use)", s, lg.count(kind::value), lg.count(kind::user_error), 0);
  pc.calls += lg.calls();
  pc.values += lg.count(kind::value);
  pc.runners += 1;
}

// ---- phase 2: shutdown_global_runner() racing global_runner().run() ------------

void shutdown_race(const params& p, const sizes& z, phase_counts& pc, bool through_run) {
  const auto C = static_cast<std::size_t>(z.race_callers);
  ledger lg(op_names, C);
  lg.allow(op_value, {kind::value, kind::closed_gate, kind::closed});
  lg.allow(op_throw, {kind::user_error, kind::closed_gate, kind::closed});
  // Per caller: the runner each call went to (phase 2 only).
  std::vector<std::vector<palitra::runner*>> used(C);
  std::atomic<bool> go{false};
  std::atomic<long> callers_left{static_cast<long>(C)};
  std::atomic<long> shutdowns{0};
  // The runner in place when the race starts, and what it already counted.
  palitra::runner* const base_runner = &palitra::global_runner();
  const palitra::runner_stats base = base_runner->stats();
  std::vector<std::thread> ths;
  const std::uint64_t salt = through_run ? 0x3000 : 0x2000;
  for (std::size_t t = 0; t < C; ++t)
    ths.emplace_back([&, t] {
      thread_slot me(static_cast<long>(t));
      rng g(p.seed, salt + t);
      me.state("at the start barrier");
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      for (long i = 0; i < z.race_calls; ++i) {
        const std::uint64_t arg = g.next();
        const bool throws = g.percent(10);
        const work w = random_work(g, 100us);
        const std::size_t idx = lg.begin(t, throws ? op_throw : op_value, arg);
        std::string detail;
        kind k;
        {
          auto in = me.enter(through_run ? "palitra::run" : "global_runner().run",
                             static_cast<std::uint64_t>(i), arg);
          if (through_run) {
            k = outcome_of(
                [&] {
                  return throws ? palitra::run(throw_task(arg, w))
                                : palitra::run(value_task(arg, w));
                },
                arg, &detail);
          } else {
            palitra::runner* r = nullptr;
            k = outcome_of(
                [&] {
                  r = &palitra::global_runner();
                  return throws ? r->run(throw_task(arg, w)) : r->run(value_task(arg, w));
                },
                arg, &detail);
            used[t].push_back(r);
          }
        }
        lg.end(t, idx, k, detail);
      }
      callers_left.fetch_sub(1);
    });
  std::vector<std::thread> closers;
  for (int c = 0; c < 2; ++c)
    closers.emplace_back([&, c] {
      thread_slot me(static_cast<long>(C) + c);
      rng g(p.seed, salt + 0x100 + static_cast<std::uint64_t>(c));
      me.state("shutdown thread: waiting");
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      for (long i = 0; i < z.shutdowns && callers_left.load() > 0; ++i) {
        std::this_thread::sleep_for(std::chrono::microseconds(g.range(0, 3000)));
        auto in = me.enter("shutdown_global_runner", static_cast<std::uint64_t>(i), 0);
        try {
          palitra::shutdown_global_runner();
        } catch (const std::exception& e) {
          fail("shutdown_global_runner threw: %s", e.what());
        }
        shutdowns.fetch_add(1);
      }
    });
  go.store(true, std::memory_order_release);
  for (auto& th : ths) th.join();
  for (auto& th : closers) th.join();
  lg.finish();
  pc.calls += lg.calls();
  pc.values += lg.count(kind::value);
  pc.closed += lg.count(kind::closed) + lg.count(kind::closed_gate);
  pc.shutdowns += static_cast<std::uint64_t>(shutdowns.load());
  if (through_run) return;

  // Exact per-runner accounting: every call says which runner it used (the
  // ledger rows and `used` line up call by call: same thread, same order).
  std::map<palitra::runner*, std::array<std::uint64_t, kind_count>> by_runner;
  for (std::size_t t = 0; t < C; ++t)
    for (std::size_t i = 0; i < used[t].size(); ++i)
      ++by_runner[used[t][i]][static_cast<std::size_t>(lg.outcome(t, i))];
  by_runner.erase(nullptr); // global_runner() itself threw (the ledger reported it)
  palitra::runner* const current = &palitra::global_runner();
  for (auto& [r, counts] : by_runner) {
    if (r == base_runner) {
      // It served phase 1 (or the previous phase) before this race began.
      counts[static_cast<std::size_t>(kind::value)] += base.completed;
      counts[static_cast<std::size_t>(kind::user_error)] += base.failed;
      counts[static_cast<std::size_t>(kind::closed)] += base.cancelled;
    }
    if (r != current && !r->closed())
      fail("phase 2: runner %p is neither the current global runner nor closed (a runner "
           "created twice?)",
           static_cast<void*>(r));
    char what[64];
    std::snprintf(what, sizeof what, "phase 2 runner %p", static_cast<void*>(r));
    check_stats(what, r->stats(), counts[static_cast<std::size_t>(kind::value)],
                counts[static_cast<std::size_t>(kind::user_error)],
                counts[static_cast<std::size_t>(kind::closed)]);
  }
  // Every shutdown can retire one runner; the phase started with one.
  SCENARIO_CHECK(by_runner.size() <= static_cast<std::size_t>(shutdowns.load()) + 1,
                 "phase 2: calls went to %zu runners after %ld shutdowns", by_runner.size(),
                 shutdowns.load());
  pc.runners += by_runner.size();
}

/// The whole child body (also run by the parent, bigger). Returns nothing;
/// violations go through fail().
void child_body(const params& p, const sizes& z, phase_counts& pc, watchdog& wd) {
  wd.phase("phase 1: first use");
  first_use(p, z, pc);
  wd.phase("phase 2: shutdown racing global_runner().run");
  shutdown_race(p, z, pc, false);
  wd.phase("phase 3: shutdown racing palitra::run");
  sizes z3 = z;
  z3.race_calls = std::max(1L, z.race_calls / 2);
  shutdown_race(p, z3, pc, true);
  wd.phase("final call");
  const std::uint64_t arg = 42;
  std::string detail;
  const kind k = outcome_of([&] { return palitra::run(value_task(arg, work{})); }, arg, &detail);
  SCENARIO_CHECK(k == kind::value, "the final palitra::run ended in %s %s", kind_name(k),
                 detail.c_str());
  SCENARIO_CHECK(palitra::is_runner_alive(), "is_runner_alive() false after the final run");
}

// ---- parent ---------------------------------------------------------------------

struct child_proc {
  pid_t pid = -1;
  long index = 0;
  std::uint64_t seed = 0;
  steady::time_point started;
};

std::string child_replay(const params& p, std::uint64_t seed) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s --child --seed 0x%016" PRIx64, p.argv0.c_str(), seed);
  return buf;
}

pid_t spawn_child(std::uint64_t seed) {
  char seed_s[32];
  std::snprintf(seed_s, sizeof seed_s, "0x%016" PRIx64, seed);
  char arg0[] = "stress_global_race", arg1[] = "--child", arg2[] = "--seed";
  char* argv[] = {arg0, arg1, arg2, seed_s, nullptr};
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv, environ);
  if (rc != 0) {
    fail("posix_spawn failed: %s", std::strerror(rc));
    return -1;
  }
  return pid;
}

} // namespace

int main(int argc, char** argv) {
  const params p = parse(argc, argv);
  sizes z;
  const auto start = steady::now();

  if (p.child) {
    // Quiet on success: the parent reports. Violations print with the seed.
    watchdog wd(p, "global_race(child)", {10s, 20s, 60s});
    phase_counts pc;
    child_body(p, z, pc, wd);
    if (failures().load() != 0) {
      say(stderr, "global_race child seed=0x%016" PRIx64 ": %ld failures (replay: %s --child "
                  "--seed 0x%016" PRIx64 ")\n",
          p.seed, failures().load(), p.argv0.c_str(), p.seed);
      return 1;
    }
    return 0; // exit() runs the atexit handler that closes the global runner
  }

  const long children = p.rounds_or(200, 4);
  const long parallel = 4;
  print_header("global_race", p, z.first_threads,
               std::to_string(z.first_threads * z.first_calls) + "+race/process",
               "processes=" + std::to_string(children) + " parallel=" + std::to_string(parallel));
  watchdog wd(p, "global_race", {15s, 30s, 240s});

  // Children, `parallel` at a time.
  const auto child_limit = std::chrono::seconds(30 * time_multiplier());
  std::vector<child_proc> running;
  long next = 0, passed = 0, failed_children = 0;
  std::atomic<long> spawned{0};
  wd.on_dump([&spawned](FILE* out) { std::fprintf(out, "  children spawned: %ld\n", spawned.load()); });
  wd.phase("children");
  thread_slot me(0);
  while (next < children || !running.empty()) {
    while (next < children && static_cast<long>(running.size()) < parallel) {
      std::uint64_t x = p.seed + static_cast<std::uint64_t>(next);
      child_proc c;
      c.index = next++;
      c.seed = splitmix64(x);
      c.pid = spawn_child(c.seed);
      c.started = steady::now();
      spawned.fetch_add(1);
      if (c.pid > 0) running.push_back(c);
    }
    auto in = me.enter("waiting for children", static_cast<std::uint64_t>(next), 0);
    for (std::size_t i = 0; i < running.size();) {
      child_proc& c = running[i];
      int status = 0;
      const pid_t r = waitpid(c.pid, &status, WNOHANG);
      bool done = false;
      if (r == c.pid) {
        done = true;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
          ++passed;
        } else {
          ++failed_children;
          fail("child %ld (pid %d) %s %d; replay: %s", c.index, static_cast<int>(c.pid),
               WIFEXITED(status) ? "exited with" : "killed by signal",
               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
               child_replay(p, c.seed).c_str());
        }
      } else if (steady::now() - c.started > child_limit) {
        kill(c.pid, SIGKILL);
        waitpid(c.pid, &status, 0);
        done = true;
        ++failed_children;
        fail("child %ld (pid %d) still running after %lld s: killed; replay: %s", c.index,
             static_cast<int>(c.pid), static_cast<long long>(child_limit.count()),
             child_replay(p, c.seed).c_str());
      }
      if (done) {
        running[i] = running.back();
        running.pop_back();
      } else {
        ++i;
      }
    }
    if (!running.empty()) std::this_thread::sleep_for(1ms);
  }
  wd.on_dump(nullptr);

  // The parent itself, bigger: its first use and a longer shutdown race.
  sizes zp = z;
  zp.race_callers = 16;
  zp.race_calls = p.scaled(300, 20);
  zp.shutdowns = p.scaled(20, 3);
  phase_counts pc;
  child_body(p, zp, pc, wd);

  say(stdout,
      "  children: %ld passed, %ld failed; in-process: calls=%" PRIu64 " values=%" PRIu64
      " closed=%" PRIu64 " shutdowns=%" PRIu64 " runners_used=%" PRIu64 "\n",
      passed, failed_children, pc.calls, pc.values, pc.closed, pc.shutdowns, pc.runners);
  return finish("global_race", p, start,
                "processes=" + std::to_string(children) + " passed=" + std::to_string(passed) +
                    " in_process_calls=" + std::to_string(pc.calls) +
                    " shutdowns=" + std::to_string(pc.shutdowns));
}
