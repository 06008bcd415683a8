// palitra — dsched.slot: the real basic_completion_slot<dsched_sync>
// (completion_slot.hpp, W1/P1/A1, I1-I3) under the deterministic scheduler.
//
// What it exercises: a caller thread and a loop thread. The caller makes
// `rounds` calls, each on a `call` (slot + result) built by placement new in
// the SAME storage, destroyed, scribbled over and (under ASan) poisoned
// between rounds: the caller's stack frame reused by its next call. So the
// loop's wake for round k, which follows its exchange (P1), can land on the
// caller sleeping in round k+1 (the late wake of reliability.md §1.3 and
// c2.4). Per seed: spin 0 / 300 ns / 2 µs (the yield phase, on the virtual
// clock); wait() or up to two wait_until() with random deadlines followed by
// wait() (future::wait_for, then get); spurious wake-ups and EINTR injected
// or not; how long the loop dawdles before P1; how sticky the schedule is.
// Checks, at the instant the caller returns (no other thread can run):
//   the word is done (I2) and the result is this round's; a wait_until that
//   gave up did so at or after its deadline (G8); the loop never sees a call
//   out of order; D1 (no lost wake-up) and D2 (step budget) from dsched.
// Mutant trust-wake (reliability.md (d) BUG_TRUST_WAKE): the waiter
// announces its sleep as W1 does and returns after one wake without
// re-reading the word. It runs with spurious wake-ups OFF, so only the late
// wake from the previous round can catch it.
// Mutant sleep-unannounced: the waiter skips W1 and sleeps while the word is
// pending, so P1 sees no sleeper and does not wake: D1 must report it.
// Scale: --seeds (default 5000; ctest passes fewer under TSan).
#include <cstdio>
#include <cstring>
#include <new>
#include <type_traits>

#include <palitra/config.hpp>
#include "wait/completion_slot.hpp"

#include "dsched.hpp"

#if PALITRA_ASAN
#  include <sanitizer/asan_interface.h>
#  define DSCHED_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#  define DSCHED_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#  define DSCHED_POISON(p, n) ((void)(p), (void)(n))
#  define DSCHED_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace palitra::detail {
namespace {

using namespace std::chrono_literals;
using slot_t = basic_completion_slot<dsched_sync>;
using dsched::check;
using dsched::no_step;

// One call as the caller's frame holds it (the call record: the slot, then the
// result the loop writes before P1).
struct call {
  slot_t slot;
  int round = -1;
  int value = -1; // written by the loop before P1, read after A1
};

enum class waiter { real, trusts_wake, sleeps_unannounced };

struct params {
  int rounds = 6;
  std::chrono::nanoseconds spin{0};
  bool timed = false;
  bool spurious = false;
  std::uint32_t sticky = 0;
  std::uint64_t publish_delay = 0; // max yields before P1
};

// The seed's parameters, from their own stream so the schedule's stream
// is untouched by how many knobs there are.
params params_for(std::uint64_t seed, waiter w) {
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 0x5107;
  auto next = [&x](std::uint64_t n) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x % n;
  };
  params p;
  static constexpr std::chrono::nanoseconds spins[] = {0ns, 0ns, 300ns, 2000ns};
  p.spin = spins[next(4)];
  p.timed = next(2) == 1;
  p.spurious = w == waiter::real && next(2) == 1; // the mutant: late wakes only
  static constexpr std::uint32_t stickies[] = {0, 500, 900};
  p.sticky = stickies[next(3)];
  p.publish_delay = next(9);
  return p;
}

// The mutant reaches the real slot's word: a standard-layout class with one
// data member is pointer-interconvertible with it.
static_assert(std::is_standard_layout_v<slot_t> &&
                  sizeof(slot_t) == sizeof(dsched::atomic<std::uint32_t>),
              "the trust-wake mutant assumes the slot is exactly its state word");

dsched::atomic<std::uint32_t>& state_word(slot_t& s) noexcept {
  return *reinterpret_cast<dsched::atomic<std::uint32_t>*>(&s);
}

// MUTANT trust-wake: breaks I2 by treating a wake-up as proof of P1.
void trusting_wait(slot_t& s) noexcept {
  if (s.is_done()) return;
  std::uint32_t e = slot_t::slot_pending;
  if (!state_word(s).compare_exchange_strong(e, slot_t::slot_waiting, std::memory_order_relaxed,
                                             std::memory_order_relaxed) &&
      e == slot_t::slot_done)
    return;
  dsched_sync::wait(state_word(s), slot_t::slot_waiting); // BUG: no re-check loop
}

// MUTANT sleep-unannounced: re-checks correctly but skips W1, so P1 sees
// pending and does not wake: a lost wake-up that only D1 can report.
void unannounced_wait(slot_t& s) noexcept {
  while (!s.is_done()) dsched_sync::wait(state_word(s), slot_t::slot_pending); // BUG: no W1
}

dsched::seed_result run_seed(std::uint64_t seed, bool verbose, waiter w) {
  const params p = params_for(seed, w);
  if (verbose)
    std::printf("  params: rounds %d, spin %lld ns, %s, spurious %s, sticky %u permille, "
                "loop delay 0..%llu yields, waiter %s\n",
                p.rounds, static_cast<long long>(p.spin.count()),
                p.timed ? "wait_until then wait" : "wait", p.spurious ? "on" : "off", p.sticky,
                static_cast<unsigned long long>(p.publish_delay),
                w == waiter::real          ? "real"
                : w == waiter::trusts_wake ? "trusts the wake (mutant)"
                                           : "sleeps without W1 (mutant)");

  dsched::options o;
  o.seed = seed;
  o.spurious_permille = p.spurious ? 150 : 0;
  o.spurious_blocked_permille = p.spurious ? 20 : 0;
  o.timeout_permille = p.timed ? 30 : 0;
  o.sticky_permille = p.sticky;
  o.step_budget = 100'000; // a passing seed takes a few hundred
  o.verbose = verbose;
  dsched::scheduler s(o);

  // The caller's "stack": every round's call lives here.
  struct alignas(call) frame_bytes {
    unsigned char b[sizeof(call)];
  };
  auto frame = std::make_unique<frame_bytes>();
  void* const storage = frame->b;
  dsched::atomic<call*> mailbox{nullptr}; // stands in for the queue (dsched.submission has it)
  dsched::event_fd mail(dsched::event_fd::mode::semaphore);
  int caller_round = -1;                  // plain: only the baton holder touches it
  std::uint64_t timed_out = 0, late_publishes = 0;
  s.name_range(storage, sizeof(call), "slot");
  s.name_range(&mailbox, sizeof mailbox, "mailbox");
  s.name_range(&mail, sizeof mail, "mail_fd");

  s.spawn("caller", [&] {
    for (int k = 0; k < p.rounds; ++k) {
      DSCHED_UNPOISON(storage, sizeof(call));
      call* c = new (storage) call();
      c->round = k;
      caller_round = k;
      mailbox.store(c, std::memory_order_release); // the submission
      mail.post();
      bool done = false;
      if (p.timed) {
        for (int attempt = 0; attempt < 2 && !done; ++attempt) {
          // -300 ns: some deadlines have already passed.
          const auto deadline =
              dsched_sync::now() + std::chrono::nanoseconds(dsched::random(4000)) - 300ns;
          done = c->slot.wait_until(deadline, p.spin);
          if (!done) {
            ++timed_out;
            no_step ns;
            check(dsched_sync::now() >= deadline, "G8: wait_until gave up before its deadline");
          }
        }
      }
      if (!done) {
        switch (w) {
        case waiter::real: {
          // The cross-CPU spin (loop.cpp) may come first: pause steps while
          // a random number of keep() checks says the loop runs elsewhere.
          // Whatever it ends with, wait() must still keep I2.
          std::uint64_t keep = dsched::random(4);
          if (keep == 0 || !c->slot.spin_phase([&keep] { return --keep > 0; }))
            c->slot.wait(p.spin);
          break;
        }
        case waiter::trusts_wake: trusting_wait(c->slot); break;
        case waiter::sleeps_unannounced: unannounced_wait(c->slot); break;
        }
      }
      {
        no_step ns; // one instant: the loop cannot publish in between
        if (!c->slot.is_done())
          check(false, "I2: the caller returned before the slot was done");
        else
          check(c->value == k, "the caller read a result that is not its round's");
      }
      if (dsched::aborted()) return; // keep the frame: the loop may still publish into it
      c->~call();
      std::memset(storage, 0xdd, sizeof(call)); // a stale read of this frame shows garbage
      DSCHED_POISON(storage, sizeof(call));     // and under ASan any access is reported
      for (auto d = dsched::random(3); d > 0; --d) dsched_sync::yield(); // other work
    }
  });

  s.spawn("loop", [&] {
    for (int k = 0; k < p.rounds; ++k) {
      call* c = nullptr;
      for (;;) {
        c = mailbox.exchange(nullptr, std::memory_order_acquire);
        if (c != nullptr || dsched::aborted()) break;
        mail.wait();
      }
      if (c == nullptr) return;
      {
        no_step ns;
        check(c->round == k, "the loop got a call out of order");
      }
      for (auto d = dsched::random(p.publish_delay + 1); d > 0; --d) dsched_sync::yield();
      c->value = k;
      c->slot.publish(); // P1: from here on c may be gone (I3)
      no_step ns;
      if (caller_round > k) ++late_publishes; // the wake, if any, hit the reused address
    }
  });

  const bool ok = s.run();
  DSCHED_UNPOISON(storage, sizeof(call));
  dsched::seed_result r;
  r.ok = ok;
  r.failure = s.failure();
  r.stats = s.stats();
  r.extra = {{"wait_until timeouts", timed_out},
             {"P1 returned after the caller reused the slot", late_publishes}};
  return r;
}

} // namespace
} // namespace palitra::detail

int main(int argc, char** argv) {
  using namespace palitra::detail;
  const std::vector<dsched::phase> phases = {
      {"", "the real slot",
       [](std::uint64_t seed, bool v) { return run_seed(seed, v, waiter::real); }},
      {"trust-wake", "waiter returns after one wake without re-reading the word; spurious off",
       [](std::uint64_t seed, bool v) { return run_seed(seed, v, waiter::trusts_wake); }},
      {"sleep-unannounced", "waiter sleeps on pending without W1; only D1 can see the lost wake",
       [](std::uint64_t seed, bool v) {
         return run_seed(seed, v, waiter::sleeps_unannounced);
       }},
  };
  return dsched::drive(
      argc, argv, "dsched.slot", 5000,
      "  caller + loop, 6 calls per seed on one reused slot address; per seed: spin 0|300ns|2us,\n"
      "  wait() or wait_until(random deadline) x2 then wait(), spurious wake-ups/EINTR on|off,\n"
      "  sticky 0|50|90%, loop delay 0..8 yields before P1",
      phases);
}
