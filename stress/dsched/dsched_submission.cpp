// palitra — dsched.submission: the real basic_submission<dsched_sync>
// (submission.hpp: gate G1-G3/S1/S2, wake elision W1-W3; mpsc_queue.hpp
// Q1/Q2) under the deterministic scheduler.
//
// What it exercises: P producer threads each submit a few nodes through
// submit(node, wake), where `wake` posts a dsched event_fd (the reactor's
// eventfd). A loop thread runs loop::run's sequence (core/runtime/loop.cpp): notice
// S1 and cancel what runs; take_all and process (a node popped while
// stopping is rejected, otherwise it "runs" for 0-2 passes); when stopping
// with nothing in flight, S2 (try_finish_stop) then the final drain until
// producers() == 0 and the queue is empty, else idle: the optional hand-over
// poll, arm_for_sleep (W1), block on the event_fd, disarm (W3). One stopper
// calls request_stop at a random step, or two race to, or one waits until
// every producer is done ("never while they run"). Per seed: 1-3 producers x
// 1-3 nodes, loop spin 0 / 400 ns, spurious wake-ups and EINTR on or off,
// weak-CAS failures injected (the push and S1 retry loops), sticky schedule.
// Checks:
//   every step: I1 (after the final drain the queue stays empty); the loop
//     never sleeps with an accepted submission or a returned request_stop
//     unseen, no wake posted and nobody inside the gate who could still
//     post one (an eager lost-wake-up check); I2 (no
//     wake-fd write after the loop exited, in the wake callback);
//   each submit: a refusal only after S1 began, and the gate is closed then;
//   each pop: a node is taken once (I3) and never a refused one;
//   after the seed: every accepted node processed exactly once, no refused
//   node processed, the queue empty, the gate stopped with no producer,
//   wakeups() <= arms, exactly one request_stop returned true, and no
//   refusal at all when the stop came after the producers;
//   D1 (lost wake-up: nobody runnable) and D2 (step budget) from dsched.
// Mutants (must be caught; the checks above must bite):
//   check-before-arm  the loop re-checks queue and gate BEFORE announcing its
//                     sleep (reliability.md (d) BUG_WAKE_ORDER), with the
//                     test's own armed flag since core's is private;
//   check-before-arm-d1  the same with the eager check off: the loop must
//                     then be found blocked forever (D1);
//   no-final-drain    the loop exits right after S2 without the final drain.
// Scale: --seeds (default 4000; ctest passes fewer under TSan).
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "dsched.hpp"
#include "runtime/submission.hpp"

namespace palitra::detail {
namespace {

using namespace std::chrono_literals;
using sub_t = basic_submission<dsched_sync>;
using dsched::check;
using dsched::no_step;

struct node : queue_node {
  int id = -1;
};

enum class variant { real, check_before_arm, no_final_drain };
enum class stop_mode { random_step, two_stoppers, after_producers };

struct params {
  int producers = 1;
  int per_producer = 1;
  stop_mode stop = stop_mode::random_step;
  std::uint64_t stop_delay = 0; // max yields before request_stop
  std::chrono::nanoseconds loop_spin{0};
  bool spurious = false;
  std::uint32_t sticky = 0;
};

params params_for(std::uint64_t seed) {
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 0x5b;
  auto next = [&x](std::uint64_t n) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x % n;
  };
  params p;
  p.producers = 1 + static_cast<int>(next(3));
  p.per_producer = 1 + static_cast<int>(next(3));
  const auto m = next(10);
  p.stop = m < 5 ? stop_mode::random_step : m < 7 ? stop_mode::two_stoppers
                                                 : stop_mode::after_producers;
  p.stop_delay = next(120);
  p.loop_spin = next(3) == 0 ? 400ns : 0ns;
  p.spurious = next(2) == 1;
  static constexpr std::uint32_t stickies[] = {0, 500, 900};
  p.sticky = stickies[next(3)];
  return p;
}

const char* stop_name(stop_mode m) {
  switch (m) {
  case stop_mode::random_step: return "one stopper at a random step";
  case stop_mode::two_stoppers: return "two stoppers at random steps";
  case stop_mode::after_producers: return "one stopper after every producer";
  }
  return "?";
}

dsched::seed_result run_seed(std::uint64_t seed, bool verbose, variant v, bool eager = true) {
  const params p = params_for(seed);
  if (verbose)
    std::printf("  params: %d producers x %d nodes, %s (delay 0..%llu yields), loop spin %lld ns, "
                "spurious %s, sticky %u permille, loop %s\n"
                "  names: sub+0 gate, sub+8 queue head, sub+16 armed, sub+24 wakeups\n",
                p.producers, p.per_producer, stop_name(p.stop),
                static_cast<unsigned long long>(p.stop_delay),
                static_cast<long long>(p.loop_spin.count()), p.spurious ? "on" : "off", p.sticky,
                v == variant::real               ? "real"
                : v == variant::check_before_arm ? "checks before arming (mutant)"
                                                 : "skips the final drain (mutant)");

  dsched::options o;
  o.seed = seed;
  o.spurious_permille = p.spurious ? 150 : 0;
  o.spurious_blocked_permille = p.spurious ? 20 : 0;
  o.weak_cas_fail_permille = 100;
  o.sticky_permille = p.sticky;
  o.step_budget = 200'000; // a passing seed takes a few hundred
  o.verbose = verbose;
  dsched::scheduler s(o);

  sub_t sub;
  dsched::event_fd wake_fd;                                     // eventfd: a read drains it
  dsched::event_fd done_fd(dsched::event_fd::mode::semaphore); // producers -> stopper
  dsched::atomic<std::uint32_t> own_armed{0};                  // mutant check-before-arm only
  s.name_range(&sub, sizeof sub, "sub");
  s.name_range(&wake_fd, sizeof wake_fd, "wake_fd");
  s.name_range(&done_fd, sizeof done_fd, "done_fd");
  s.name_range(&own_armed, sizeof own_armed, "own_armed");

  const int total = p.producers * p.per_producer;
  std::vector<node> nodes(static_cast<std::size_t>(total));
  for (int i = 0; i < total; ++i) nodes[static_cast<std::size_t>(i)].id = i;
  s.name_range(nodes.data(), sizeof(node) * nodes.size(), "nodes");
  // Test bookkeeping: plain, only the baton holder touches it.
  std::vector<int> processed(static_cast<std::size_t>(total), 0);
  std::vector<int> outcome(static_cast<std::size_t>(total), 0); // 1 accepted, 2 refused
  bool stop_begun = false, loop_sleeping = false, final_drained = false, loop_exited = false;
  int producers_done = 0, stops_true = 0;
  std::uint64_t arms = 0, sleeps = 0, refused = 0, rejected_by_loop = 0, started = 0;

  auto wake = [&] {
    if (v != variant::check_before_arm) { // the mutant wakes outside the gate by design
      no_step ns;
      check(!loop_exited, "I2: the wake fd was written after the loop exited");
    }
    wake_fd.post();
  };
  auto own_wake = [&] { // the mutant's producer half of its own wake elision
    if (own_armed.load(std::memory_order_seq_cst) != 0 &&
        own_armed.exchange(0, std::memory_order_seq_cst) != 0)
      wake_fd.post();
  };

  for (int i = 0; i < p.producers; ++i) {
    s.spawn("producer" + std::to_string(i), [&, i] {
      for (int j = 0; j < p.per_producer; ++j) {
        node& n = nodes[static_cast<std::size_t>(i * p.per_producer + j)];
        const bool ok = sub.submit(n, wake);
        if (ok && v == variant::check_before_arm) own_wake();
        no_step ns;
        outcome[static_cast<std::size_t>(n.id)] = ok ? 1 : 2;
        if (!ok) {
          ++refused;
          check(stop_begun, "submit refused while running: no request_stop had begun");
          check(!sub.accepting(), "submit refused but the gate still says running");
        }
      }
      {
        no_step ns;
        ++producers_done;
      }
      done_fd.post();
    });
  }

  auto stopper = [&] {
    if (p.stop == stop_mode::after_producers) {
      while (producers_done < p.producers && !dsched::aborted()) done_fd.wait();
    } else {
      for (auto d = dsched::random(p.stop_delay + 1); d > 0; --d) dsched_sync::yield();
    }
    stop_begun = true;
    const bool ok = sub.request_stop(wake); // S1
    if (v == variant::check_before_arm) own_wake();
    if (ok) ++stops_true;
  };
  s.spawn("stopper", stopper);
  if (p.stop == stop_mode::two_stoppers) s.spawn("stopper2", stopper);

  s.spawn("loop", [&] {
    bool stopping = false;
    struct running_op {
      int id;
      std::uint64_t passes;
      bool cancelled;
    };
    std::vector<running_op> ready; // started ops: loop.cpp's registry + ready list
    auto process = [&](queue_node* qn) {
      const node* n = static_cast<const node*>(qn);
      no_step ns;
      check(n->id >= 0 && n->id < total, "the queue returned a foreign node");
      if (dsched::aborted()) return;
      int& count = processed[static_cast<std::size_t>(n->id)];
      ++count;
      check(count == 1, "I3: a submission was taken twice");
      check(outcome[static_cast<std::size_t>(n->id)] != 2, "a refused submission was pushed");
      if (stopping) {
        ++rejected_by_loop; // accepted by G1, popped after S1: never starts (I3)
      } else {
        ++started;
        ready.push_back({n->id, dsched::random(3), false});
      }
    };
    auto drain_queue = [&] {
      queue_node* n = sub.take_all(); // Q2
      while (n != nullptr) {
        queue_node* next = n->next;
        process(n);
        n = next;
      }
    };
    auto run_ready = [&] {
      // A running op ends when cancelled (begin_stop) or when its work is done.
      std::erase_if(ready, [](running_op& op) { return op.cancelled || op.passes-- == 0; });
    };

    for (;;) {
      if (dsched::aborted()) return;
      if (!stopping && !sub.accepting()) { // begin_stop
        stopping = true;
        for (auto& op : ready) op.cancelled = true;
      }
      drain_queue();
      run_ready();
      if (stopping && ready.empty()) {
        if (sub.try_finish_stop()) { // S2
          if (v != variant::no_final_drain) {
            for (;;) { // the final drain (I1)
              drain_queue();
              run_ready();
              if (sub.producers() == 0 && sub.queue_empty() && ready.empty()) break;
              if (dsched::aborted()) return;
              dsched_sync::yield();
            }
          }
          no_step ns;
          final_drained = true;
          loop_exited = true;
          return;
        }
        dsched_sync::yield(); // a producer is between G1 and G3: let it finish
        continue;
      }
      if (!ready.empty()) continue;

      // idle(): the hand-over poll, then W1, the reactor, W3.
      if (p.loop_spin > 0ns) {
        bool work = false;
        const auto until = dsched_sync::now() + p.loop_spin;
        do {
          if (!sub.queue_empty_hint() || (!stopping && !sub.accepting())) {
            work = true;
            break;
          }
          dsched_sync::yield();
        } while (dsched_sync::now() < until);
        if (work) continue;
      }
      ++arms;
      if (v == variant::check_before_arm) {
        // MUTANT: re-check first, announce the sleep after (BUG_WAKE_ORDER).
        if (!sub.queue_empty() || (!stopping && !sub.accepting())) continue;
        own_armed.store(1, std::memory_order_seq_cst);
      } else if (!sub.arm_for_sleep(stopping)) { // W1
        continue;
      }
      {
        no_step ns;
        loop_sleeping = true;
        ++sleeps;
      }
      wake_fd.wait(); // reactor_.wait(): epoll_wait + read of the eventfd
      loop_sleeping = false;
      if (v == variant::check_before_arm)
        own_armed.store(0, std::memory_order_relaxed);
      else
        sub.disarm(); // W3
    }
  });

  s.set_aux_check([&] {
    if (final_drained) check(sub.queue_empty(), "I1: a node was pushed after the final drain");
    // A wake claimed by W2 is posted before that producer's G3 (and inside
    // request_stop's counted section), so with nobody inside the gate and
    // nothing posted, nobody is going to wake the loop.
    if (eager && loop_sleeping && wake_fd.count() == 0 && sub.producers() == 0) {
      bool unseen = stops_true > 0;
      for (int id = 0; id < total; ++id)
        unseen = unseen || (outcome[static_cast<std::size_t>(id)] == 1 &&
                            processed[static_cast<std::size_t>(id)] == 0);
      check(!unseen, "lost wake-up: the loop sleeps with an accepted submission or a stop "
                     "unseen, and no wake is pending");
    }
  });

  const bool ok = s.run();
  dsched::seed_result r;
  r.ok = ok;
  r.failure = s.failure();
  r.stats = s.stats();
  r.extra = {{"loop sleeps", sleeps},
             {"arms", arms},
             {"wake-fd writes", sub.wakeups()},
             {"refused by the gate", refused},
             {"popped after S1", rejected_by_loop}};
  if (!ok) return r;

  // After the seed, from the main thread (no scheduler: plain reads).
  std::string why;
  auto fail_if = [&why](bool bad, const std::string& msg) {
    if (bad && why.empty()) why = msg;
  };
  fail_if(!loop_exited, "the loop did not exit");
  for (int id = 0; id < total; ++id) {
    const int out = outcome[static_cast<std::size_t>(id)];
    const int n = processed[static_cast<std::size_t>(id)];
    const std::string which = "submission " + std::to_string(id);
    fail_if(out == 0, which + ": submit never returned");
    fail_if(out == 1 && n != 1,
            "I3: accepted " + which + " processed " + std::to_string(n) + " times");
    fail_if(out == 2 && n != 0, "refused " + which + " was processed");
  }
  fail_if(sub.take_all() != nullptr, "I1: the queue is not empty after the loop exited");
  fail_if(sub.producers() != 0, "the gate's producer count did not return to 0");
  fail_if(sub.accepting(), "the gate is still running");
  fail_if(sub.wakeups() > arms, "more wake-fd writes (" + std::to_string(sub.wakeups()) +
                                    ") than arms (" + std::to_string(arms) + ")");
  fail_if(stops_true != 1, "request_stop returned true " + std::to_string(stops_true) + " times");
  fail_if(p.stop == stop_mode::after_producers && refused != 0,
          "a submit was refused although the stop came after every producer");
  if (!why.empty()) {
    r.ok = false;
    r.failure = "seed " + std::to_string(seed) + ": after the run: " + why;
  }
  return r;
}

} // namespace
} // namespace palitra::detail

int main(int argc, char** argv) {
  using namespace palitra::detail;
  const std::vector<dsched::phase> phases = {
      {"", "the real gate, queue and wake elision",
       [](std::uint64_t seed, bool v) { return run_seed(seed, v, variant::real); }},
      {"check-before-arm", "the loop re-checks queue and gate before announcing its sleep",
       [](std::uint64_t seed, bool v) { return run_seed(seed, v, variant::check_before_arm); }},
      {"check-before-arm-d1", "the same, with the eager lost-wake check off: D1 must see it",
       [](std::uint64_t seed, bool v) {
         return run_seed(seed, v, variant::check_before_arm, false);
       }},
      {"no-final-drain", "the loop exits right after S2 without the final drain",
       [](std::uint64_t seed, bool v) { return run_seed(seed, v, variant::no_final_drain); }},
  };
  return dsched::drive(
      argc, argv, "dsched.submission", 4000,
      "  1-3 producers x 1-3 nodes, a loop mirroring loop::run, 1-2 stoppers (random step or\n"
      "  after the producers); per seed: loop spin 0|400ns, spurious wake-ups/EINTR on|off,\n"
      "  weak-CAS failures 10%, sticky 0|50|90%",
      phases);
}
