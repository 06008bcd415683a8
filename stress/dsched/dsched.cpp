// palitra — the deterministic scheduler (protocol block: dsched.hpp) and the
// driver shared by the dsched programs.
#include "dsched.hpp"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <semaphore>
#include <thread>

#include <palitra/config.hpp>

#if PALITRA_LINUX
#  include <pthread.h>
#  include <sched.h>
#endif

namespace palitra::detail {
namespace dsched {
namespace {

thread_local scheduler* tl_sched = nullptr;
thread_local int tl_index = -1;
thread_local int tl_no_step = 0;

std::string g_replay_prefix = "<program>";

// After a failure the bodies get this many more steps to return (D2).
constexpr std::uint64_t drain_budget = 200'000;
// Steps kept for the failure dump.
constexpr std::size_t ring_size = 48;

std::uint64_t splitmix64(std::uint64_t& x) noexcept {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }

const char* op_name(op o) noexcept {
  switch (o) {
  case op::load: return "load";
  case op::store: return "store";
  case op::exchange: return "xchg";
  case op::cas_weak: return "cas_weak";
  case op::cas_strong: return "cas";
  case op::fetch_add: return "fetch_add";
  case op::fetch_sub: return "fetch_sub";
  case op::wait: return "wait";
  case op::wait_until: return "wait_until";
  case op::wake: return "wake_one";
  case op::yield: return "yield";
  case op::ev_post: return "ev_post";
  case op::ev_wait: return "ev_wait";
  }
  return "?";
}

// wait / wait_until / ev_wait outcomes, in trace_entry::c.
enum wait_outcome : std::uint64_t {
  wo_changed = 0,  // the word differed: EAGAIN, no sleep
  wo_sleeps = 1,   // blocked in the scheduler
  wo_spurious = 2, // injected spurious return / EINTR
  wo_aborted = 3,  // the run already failed: drain
  wo_expired = 4,  // the deadline had passed: ETIMEDOUT at once
  wo_consumed = 5, // event_fd: the counter was non-zero
};

const char* wait_outcome_name(std::uint64_t c) noexcept {
  switch (c) {
  case wo_changed: return "word changed (EAGAIN)";
  case wo_sleeps: return "sleeps";
  case wo_spurious: return "spurious return (injected)";
  case wo_aborted: return "returns (draining)";
  case wo_expired: return "deadline passed (ETIMEDOUT)";
  case wo_consumed: return "counter read";
  }
  return "?";
}

std::string fmt_value(std::uint64_t v) {
  char buf[32];
  if (v > 0xffff && v < 0xffffffffffff0000ull)
    std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  else
    std::snprintf(buf, sizeof buf, "%" PRId64, static_cast<std::int64_t>(v));
  return buf;
}

} // namespace

counters& counters::operator+=(const counters& o) noexcept {
  seeds += o.seeds;
  steps += o.steps;
  switches += o.switches;
  blocks += o.blocks;
  wakes += o.wakes;
  empty_wakes += o.empty_wakes;
  spurious += o.spurious;
  timeouts += o.timeouts;
  weak_cas_failures += o.weak_cas_failures;
  return *this;
}

struct scheduler::thread_rec {
  enum class state { runnable, blocked, finished };
  int index = 0;
  std::string name;
  std::function<void()> body;
  std::binary_semaphore go{0}; // the baton: released by the previous holder
  state st = state::runnable;
  const void* key = nullptr; // blocked: the address or event_fd waited on
  wait_kind kind = wait_kind::address;
  bool timed = false;
  time_point deadline{};
  std::uint64_t blocked_seq = 0;  // FIFO order among waiters of one key
  std::uint64_t blocked_step = 0;
  wake_reason reason = wake_reason::woken;
  trace_entry last{};
  std::thread th;
};

struct scheduler::done_signal {
  std::binary_semaphore sem{0};
};

scheduler::scheduler(const options& o)
    : opt_(o), clock_(std::chrono::seconds(1000)), ring_(ring_size),
      done_(std::make_unique<done_signal>()) {
  stats_.seeds = 1;
  std::uint64_t x = o.seed;
  for (auto& r : rng_) r = splitmix64(x);
}

scheduler::~scheduler() {
  for (auto& t : threads_)
    if (t->th.joinable()) t->th.join();
}

void scheduler::spawn(std::string name, std::function<void()> body) {
  auto t = std::make_unique<thread_rec>();
  t->index = static_cast<int>(threads_.size());
  t->name = std::move(name);
  t->body = std::move(body);
  threads_.push_back(std::move(t));
}

void scheduler::name_range(const void* base, std::size_t size, std::string name) {
  names_.push_back({static_cast<const char*>(base), size, std::move(name)});
}

void scheduler::set_aux_check(std::function<void()> f) { aux_ = std::move(f); }

scheduler* scheduler::current() noexcept { return tl_sched; }

std::uint64_t scheduler::next_random() noexcept {
  // xoshiro256**: small, fast, and the same sequence on every host.
  const std::uint64_t result = rotl(rng_[1] * 5, 7) * 9;
  const std::uint64_t t = rng_[1] << 17;
  rng_[2] ^= rng_[0];
  rng_[3] ^= rng_[1];
  rng_[1] ^= rng_[2];
  rng_[0] ^= rng_[3];
  rng_[2] ^= t;
  rng_[3] = rotl(rng_[3], 45);
  return result;
}

std::uint64_t scheduler::random(std::uint64_t n) noexcept {
  return n == 0 ? 0 : next_random() % n; // the bias is irrelevant here
}

bool scheduler::chance(std::uint32_t permille) noexcept {
  return permille != 0 && random(1000) < permille;
}

namespace {

// Only one participant runs at a time, so they lose nothing by sharing one
// CPU, and a hand-over becomes a same-CPU block -> wake switch. Spread over
// CPUs, every hand-over is a cross-CPU wake that must preempt whatever else
// runs there: with one busy process beside it, a run took 7-23x longer.
int pick_cpu() noexcept {
#if PALITRA_LINUX
  return sched_getcpu();
#else
  return -1;
#endif
}

void pin_to(int cpu) noexcept {
#if PALITRA_LINUX
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set); // best effort
#else
  (void)cpu;
#endif
}

} // namespace

bool scheduler::run() {
  if (threads_.empty()) return true;
  const int cpu = pick_cpu();
  for (auto& tp : threads_) {
    thread_rec* t = tp.get();
    t->th = std::thread([this, t, cpu] {
      pin_to(cpu);
      tl_sched = this;
      tl_index = t->index;
      t->go.acquire();
      try {
        t->body(); // also after a failure: bodies return through aborted()
      } catch (const std::exception& e) {
        fail(std::string("a participant threw: ") + e.what());
      } catch (...) {
        fail("a participant threw");
      }
      finish(t);
      tl_sched = nullptr;
      tl_index = -1;
    });
  }
  thread_rec* first = pick(nullptr);
  first->go.release();
  done_->sem.acquire();
  for (auto& t : threads_) t->th.join();
  return !failed_;
}

scheduler::thread_rec* scheduler::pick(thread_rec* self) noexcept {
  thread_rec* cand[64];
  std::size_t n = 0;
  for (auto& t : threads_)
    if (t->st == thread_rec::state::runnable && n < std::size(cand)) cand[n++] = t.get();
  if (n == 0) return nullptr;
  if (self != nullptr && self->st == thread_rec::state::runnable && chance(opt_.sticky_permille))
    return self;
  return cand[random(n)];
}

void scheduler::switch_to(thread_rec* self, thread_rec* next) noexcept {
  if (next == self) return;
  ++stats_.switches;
  next->go.release(); // the semaphore pair orders every access of ours before theirs
  self->go.acquire();
}

void scheduler::release(thread_rec* t, wake_reason r) noexcept {
  t->st = thread_rec::state::runnable;
  t->reason = r;
  t->key = nullptr;
  t->timed = false;
}

void scheduler::inject() noexcept {
  for (auto& tp : threads_) {
    thread_rec* t = tp.get();
    if (t->st != thread_rec::state::blocked) continue;
    if (t->timed && (t->deadline <= clock_ || chance(opt_.timeout_permille))) {
      if (t->deadline > clock_) clock_ = t->deadline; // a timeout means the time passed
      ++stats_.timeouts;
      release(t, wake_reason::timeout);
    } else if (chance(opt_.spurious_blocked_permille)) {
      // Only here, while the caller of inject() is runnable: a spurious wake
      // never rescues a state in which every thread is blocked (D1).
      ++stats_.spurious;
      release(t, wake_reason::spurious);
    }
  }
}

trace_entry* scheduler::enter(op o, const void* addr) noexcept {
  thread_rec* self = threads_[static_cast<std::size_t>(tl_index)].get();
  clock_ += std::chrono::nanoseconds(20 + random(80));
  if (stats_.steps >= opt_.step_budget) {
    if (!failed_) {
      fail("D2: step budget of " + std::to_string(opt_.step_budget) +
           " steps exhausted (livelock or hang)");
    } else if (stats_.steps >= opt_.step_budget + drain_budget) {
      std::fprintf(stderr,
                   "dsched: the run failed and its threads did not drain in %" PRIu64
                   " more steps; giving up.\n%s\nreplay: %s --seed %" PRIu64 "\n",
                   drain_budget, failure_.c_str(), g_replay_prefix.c_str(), opt_.seed);
      std::fflush(stderr);
      std::_Exit(1);
    }
  }
  inject();
  if (aux_) {
    ++tl_no_step;
    aux_();
    --tl_no_step;
  }
  switch_to(self, pick(self));
  // Our turn: the access happens now, so the trace is in access order.
  ++stats_.steps;
  trace_entry& e = ring_[ring_next_];
  ring_next_ = (ring_next_ + 1) % ring_.size();
  e = trace_entry{};
  e.step = stats_.steps;
  e.thread = self->index;
  e.kind = o;
  e.addr = addr;
  return &e;
}

void scheduler::leave(trace_entry* e) noexcept {
  threads_[static_cast<std::size_t>(e->thread)]->last = *e;
  if (opt_.verbose) std::printf("  %s\n", describe(*e).c_str());
}

wake_reason scheduler::block(const void* key, wait_kind k, const time_point* deadline) noexcept {
  thread_rec* self = threads_[static_cast<std::size_t>(tl_index)].get();
  if (failed_) return wake_reason::aborted;
  ++stats_.blocks;
  self->st = thread_rec::state::blocked;
  self->key = key;
  self->kind = k;
  self->timed = deadline != nullptr;
  if (deadline != nullptr) self->deadline = *deadline;
  self->blocked_seq = ++block_seq_;
  self->blocked_step = stats_.steps;
  thread_rec* next = pick(self);
  if (next == nullptr) next = resolve_stall();
  switch_to(self, next);
  if (opt_.verbose) {
    static const char* const names[] = {"woken", "spurious (injected)", "timed out", "draining"};
    std::printf("  (t%d %s resumes: %s)\n", self->index, self->name.c_str(),
                names[static_cast<int>(self->reason)]);
  }
  return self->reason;
}

bool scheduler::wake_one(const void* key, wait_kind k) noexcept {
  thread_rec* best = nullptr;
  for (auto& t : threads_)
    if (t->st == thread_rec::state::blocked && t->key == key && t->kind == k &&
        (best == nullptr || t->blocked_seq < best->blocked_seq))
      best = t.get();
  if (best == nullptr) {
    if (k == wait_kind::address) ++stats_.empty_wakes; // a post just stays counted
    return false;
  }
  ++stats_.wakes;
  release(best, wake_reason::woken);
  return true;
}

scheduler::thread_rec* scheduler::resolve_stall() noexcept {
  // Nobody can run. Time passes if someone has a deadline.
  thread_rec* best = nullptr;
  for (auto& t : threads_)
    if (t->st == thread_rec::state::blocked && t->timed &&
        (best == nullptr || t->deadline < best->deadline))
      best = t.get();
  if (best != nullptr) {
    if (best->deadline > clock_) clock_ = best->deadline;
    ++stats_.timeouts;
    release(best, wake_reason::timeout);
    return best;
  }
  std::size_t blocked = 0;
  for (auto& t : threads_) blocked += t->st == thread_rec::state::blocked;
  fail("D1: lost wake-up: no thread is runnable and " + std::to_string(blocked) +
       " blocked without a deadline");
  return pick(nullptr); // fail() released everyone: drain
}

void scheduler::finish(thread_rec* self) noexcept {
  self->st = thread_rec::state::finished;
  bool all = true;
  for (auto& t : threads_) all = all && t->st == thread_rec::state::finished;
  if (all) {
    done_->sem.release();
    return;
  }
  thread_rec* next = pick(nullptr);
  if (next == nullptr) next = resolve_stall();
  ++stats_.switches;
  next->go.release();
}

void scheduler::fail(const std::string& what) noexcept {
  if (failed_) return; // the first failure is the one to replay
  failed_ = true;
  char head[64];
  std::snprintf(head, sizeof head, "seed %" PRIu64 ": ", opt_.seed);
  failure_ = head + what + "\n" + dump();
  if (opt_.verbose) std::printf("  FAIL: %s\n", what.c_str());
  for (auto& t : threads_)
    if (t->st == thread_rec::state::blocked) release(t.get(), wake_reason::aborted);
}

std::string scheduler::describe_addr(const void* a) const {
  if (a == nullptr) return "-";
  const char* p = static_cast<const char*>(a);
  for (const auto& n : names_) {
    if (p >= n.base && p < n.base + n.size) {
      const auto off = static_cast<std::size_t>(p - n.base);
      return off == 0 ? n.name : n.name + "+" + std::to_string(off);
    }
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", a);
  return buf;
}

std::string scheduler::describe(const trace_entry& e) const {
  char buf[256];
  const std::string who =
      e.thread >= 0 ? "t" + std::to_string(e.thread) + " " +
                          threads_[static_cast<std::size_t>(e.thread)]->name
                    : "?";
  const std::string at = describe_addr(e.addr);
  const char* name = op_name(e.kind);
  switch (e.kind) {
  case op::load:
    std::snprintf(buf, sizeof buf, "%s %s -> %s", name, at.c_str(), fmt_value(e.a).c_str());
    break;
  case op::store:
    std::snprintf(buf, sizeof buf, "%s %s = %s", name, at.c_str(), fmt_value(e.a).c_str());
    break;
  case op::exchange:
    std::snprintf(buf, sizeof buf, "%s %s %s -> %s", name, at.c_str(), fmt_value(e.a).c_str(),
                  fmt_value(e.b).c_str());
    break;
  case op::cas_weak:
  case op::cas_strong:
    std::snprintf(buf, sizeof buf, "%s %s %s -> %s: %s (saw %s)", name, at.c_str(),
                  fmt_value(e.a).c_str(), fmt_value(e.b).c_str(), e.ok ? "ok" : "failed",
                  fmt_value(e.c).c_str());
    break;
  case op::fetch_add:
  case op::fetch_sub:
    std::snprintf(buf, sizeof buf, "%s %s %s by %s", name, at.c_str(), fmt_value(e.a).c_str(),
                  fmt_value(e.b).c_str());
    break;
  case op::wait:
  case op::wait_until:
    std::snprintf(buf, sizeof buf, "%s %s while == %s: %s", name, at.c_str(),
                  fmt_value(e.a).c_str(), wait_outcome_name(e.c));
    break;
  case op::wake:
    std::snprintf(buf, sizeof buf, "%s %s: %s", name, at.c_str(),
                  e.ok ? "a waiter made runnable" : "no waiter");
    break;
  case op::yield: std::snprintf(buf, sizeof buf, "%s", name); break;
  case op::ev_post:
    std::snprintf(buf, sizeof buf, "%s %s: counter %s%s", name, at.c_str(),
                  fmt_value(e.a).c_str(), e.ok ? ", a waiter made runnable" : "");
    break;
  case op::ev_wait:
    std::snprintf(buf, sizeof buf, "%s %s: %s", name, at.c_str(), wait_outcome_name(e.c));
    break;
  }
  char line[400];
  std::snprintf(line, sizeof line, "#%-6" PRIu64 " %-14s %s", e.step, who.c_str(), buf);
  return line;
}

std::string scheduler::dump() const {
  std::string s = "  threads:\n";
  for (const auto& t : threads_) {
    std::string st;
    switch (t->st) {
    case thread_rec::state::runnable: st = "runnable"; break;
    case thread_rec::state::finished: st = "finished"; break;
    case thread_rec::state::blocked:
      st = std::string("BLOCKED on ") + (t->kind == wait_kind::event ? "event " : "address ") +
           describe_addr(t->key) + (t->timed ? " (timed)" : "") + " since step " +
           std::to_string(t->blocked_step);
      break;
    }
    s += "    t" + std::to_string(t->index) + " " + t->name + ": " + st + "\n";
    s += "      last step: " + (t->last.thread >= 0 ? describe(t->last) : "(none)") + "\n";
  }
  s += "  last steps:\n";
  for (std::size_t i = 0; i < ring_.size(); ++i) {
    const trace_entry& e = ring_[(ring_next_ + i) % ring_.size()];
    if (e.thread >= 0) s += "    " + describe(e) + "\n";
  }
  return s;
}

// ---- free functions -------------------------------------------------------

trace_entry* enter(op o, const void* addr) noexcept {
  if (tl_sched == nullptr || tl_no_step != 0) return nullptr;
  return tl_sched->enter(o, addr);
}

void leave(trace_entry* e, std::uint64_t a, std::uint64_t b, std::uint64_t c, bool ok) noexcept {
  if (e == nullptr) return;
  e->a = a;
  e->b = b;
  e->c = c;
  e->ok = ok;
  tl_sched->leave(e);
}

bool aborted() noexcept { return tl_sched != nullptr && tl_sched->failed(); }

void check(bool ok, const char* what) noexcept {
  if (ok) return;
  if (tl_sched == nullptr) {
    std::fprintf(stderr, "dsched: check failed outside a participant: %s\n", what);
    std::abort();
  }
  tl_sched->fail(std::string("check failed in t") + std::to_string(tl_index) + ": " + what);
}

std::uint64_t random(std::uint64_t n) noexcept {
  return tl_sched != nullptr ? tl_sched->random(n) : 0;
}

no_step::no_step() noexcept { ++tl_no_step; }
no_step::~no_step() { --tl_no_step; }

void set_replay_prefix(std::string s) { g_replay_prefix = std::move(s); }
const std::string& replay_prefix() noexcept { return g_replay_prefix; }

// ---- event_fd -------------------------------------------------------------

void event_fd::post() noexcept {
  trace_entry* e = enter(op::ev_post, this);
  ++count_;
  if (e == nullptr) return;
  const bool woke = tl_sched->wake_one(this, wait_kind::event);
  leave(e, count_, 0, 0, woke);
}

void event_fd::wait() noexcept {
  auto consume = [this] {
    if (mode_ == mode::drain)
      count_ = 0;
    else
      --count_;
  };
  trace_entry* e = enter(op::ev_wait, this);
  if (e == nullptr) {
    if (count_ > 0) consume();
    return;
  }
  scheduler* s = tl_sched;
  if (count_ > 0) {
    consume();
    leave(e, 0, 0, wo_consumed);
    return;
  }
  if (s->failed()) {
    leave(e, 0, 0, wo_aborted);
    return;
  }
  if (s->chance(s->opts().spurious_permille)) { // EINTR
    s->count_spurious();
    leave(e, 0, 0, wo_spurious);
    return;
  }
  leave(e, 0, 0, wo_sleeps);
  if (s->block(this, wait_kind::event, nullptr) == wake_reason::woken && count_ > 0) consume();
}

} // namespace dsched

// ---- dsched_sync ----------------------------------------------------------

namespace {

// The futex wait as one step: compare, then sleep or return. false only
// for a timeout (ETIMEDOUT); every other return is "maybe woken".
bool futex_wait(const dsched::atomic<std::uint32_t>& a, std::uint32_t expected,
                const dsched::time_point* deadline) noexcept {
  using namespace dsched;
  trace_entry* e = enter(deadline != nullptr ? op::wait_until : op::wait, &a);
  if (e == nullptr) return true; // not scheduled: a spurious return is always allowed
  scheduler* s = scheduler::current();
  if (a.peek() != expected) {
    leave(e, expected, 0, wo_changed);
    return true;
  }
  if (deadline != nullptr && s->now() >= *deadline) {
    s->count_timeout();
    leave(e, expected, 0, wo_expired);
    return false;
  }
  if (s->failed()) {
    leave(e, expected, 0, wo_aborted);
    return true;
  }
  if (s->chance(s->opts().spurious_permille)) { // spurious return or EINTR
    s->count_spurious();
    leave(e, expected, 0, wo_spurious);
    return true;
  }
  leave(e, expected, 0, wo_sleeps);
  return s->block(&a, wait_kind::address, deadline) != wake_reason::timeout;
}

} // namespace

void dsched_sync::wait(const atomic<std::uint32_t>& a, std::uint32_t expected) noexcept {
  futex_wait(a, expected, nullptr);
}

bool dsched_sync::wait_until(const atomic<std::uint32_t>& a, std::uint32_t expected,
                             std::chrono::steady_clock::time_point deadline) noexcept {
  return futex_wait(a, expected, &deadline);
}

void dsched_sync::wake_one(const void* addr) noexcept {
  using namespace dsched;
  trace_entry* e = enter(op::wake, addr);
  if (e == nullptr) return;
  // The address is only a key: nothing here reads the object (slot I3).
  const bool woke = scheduler::current()->wake_one(addr, wait_kind::address);
  leave(e, 0, 0, 0, woke);
}

void dsched_sync::yield() noexcept {
  dsched::trace_entry* e = dsched::enter(dsched::op::yield, nullptr);
  dsched::leave(e);
}

std::chrono::steady_clock::time_point dsched_sync::now() noexcept {
  dsched::scheduler* s = dsched::scheduler::current();
  return s != nullptr ? s->now() : std::chrono::steady_clock::now();
}

// ---- the driver -----------------------------------------------------------

namespace dsched {
namespace {

struct totals {
  counters c;
  std::map<std::string, std::uint64_t> extra;
  void add(const seed_result& r) {
    c += r.stats;
    for (const auto& [k, v] : r.extra) extra[k] += v;
  }
  std::string line() const {
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "seeds %" PRIu64 ", steps %" PRIu64 ", switches %" PRIu64
                  ", sleeps %" PRIu64 ", wakes %" PRIu64 " (+%" PRIu64
                  " on an address nobody waits on), spurious wakeups injected %" PRIu64 ", timeouts %" PRIu64
                  ", weak-CAS failures injected %" PRIu64,
                  c.seeds, c.steps, c.switches, c.blocks, c.wakes, c.empty_wakes, c.spurious,
                  c.timeouts, c.weak_cas_failures);
    std::string s = buf;
    for (const auto& [k, v] : extra) s += ", " + k + " " + std::to_string(v);
    return s;
  }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool parse_u64(const char* s, std::uint64_t& out) {
  if (s == nullptr || *s == '\0') return false;
  char* end = nullptr;
  out = std::strtoull(s, &end, 0);
  return end != nullptr && *end == '\0';
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

} // namespace

int drive(int argc, char** argv, const char* test_name, std::uint64_t default_seeds,
          const std::string& header, const std::vector<phase>& phases) {
  std::uint64_t seeds = default_seeds, first = 1, replay = 0, mutant_seeds = 20'000;
  bool have_replay = false, mutants = true;
  std::string only_mutant;
  bool only_mutant_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    bool ok = true;
    if (a == "--seeds") {
      ok = parse_u64(v, seeds) && seeds > 0;
      ++i;
    } else if (a == "--first") {
      ok = parse_u64(v, first);
      ++i;
    } else if (a == "--seed") {
      ok = parse_u64(v, replay);
      have_replay = true;
      ++i;
    } else if (a == "--mutant-seeds") {
      ok = parse_u64(v, mutant_seeds) && mutant_seeds > 0;
      ++i;
    } else if (a == "--mutant") {
      ok = v != nullptr;
      if (ok) only_mutant = v;
      only_mutant_given = true;
      ++i;
    } else if (a == "--no-mutants") {
      mutants = false;
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr,
                   "usage: %s [--seeds N] [--first S] [--seed S] [--mutant NAME] "
                   "[--mutant-seeds M] [--no-mutants]\n  mutants:",
                   argv[0]);
      for (const auto& p : phases)
        if (!p.mutant.empty()) std::fprintf(stderr, " %s", p.mutant.c_str());
      std::fprintf(stderr, "\n");
      return 2;
    }
  }
  set_replay_prefix(argv[0]);

  if (have_replay) {
    const phase* p = nullptr;
    for (const auto& ph : phases)
      if (ph.mutant == only_mutant) p = &ph;
    if (p == nullptr) {
      std::fprintf(stderr, "%s: no mutant named '%s'\n", test_name, only_mutant.c_str());
      return 2;
    }
    std::printf("%s: replaying seed %" PRIu64 "%s%s\n", test_name, replay,
                p->mutant.empty() ? "" : " of mutant ", p->mutant.c_str());
    const auto t0 = std::chrono::steady_clock::now();
    seed_result r = p->run(replay, true);
    totals t;
    t.add(r);
    std::printf("%s: %s in %.2f s: %s\n", test_name, r.ok ? "PASS" : "FAIL", seconds_since(t0),
                t.line().c_str());
    if (!r.ok) std::printf("%s\n", r.failure.c_str());
    return r.ok ? 0 : 1;
  }

  std::printf("%s: seeds %" PRIu64 "..%" PRIu64 " (%" PRIu64 ")\n%s\n", test_name, first,
              first + seeds - 1, seeds, header.c_str());
  std::fflush(stdout);
  int rc = 0;
  for (const auto& p : phases) {
    if (!p.mutant.empty()) continue;
    if (only_mutant_given) break;
    const auto t0 = std::chrono::steady_clock::now();
    totals t;
    for (std::uint64_t s = first; s < first + seeds; ++s) {
      seed_result r = p.run(s, false);
      t.add(r);
      if (!r.ok) {
        std::printf("%s: FAIL after %" PRIu64 " seeds (%.2f s)\n%s\nreplay: %s --seed %" PRIu64
                    "\n",
                    test_name, s - first + 1, seconds_since(t0), r.failure.c_str(),
                    argv[0], s);
        return 1;
      }
    }
    std::printf("%s: PASS %s in %.2f s\n", test_name, t.line().c_str(), seconds_since(t0));
    std::fflush(stdout);
  }
  if (!mutants) return rc;
  for (const auto& p : phases) {
    if (p.mutant.empty() || (only_mutant_given && p.mutant != only_mutant)) continue;
    const auto t0 = std::chrono::steady_clock::now();
    totals t;
    bool caught = false;
    for (std::uint64_t s = first; s < first + mutant_seeds; ++s) {
      seed_result r = p.run(s, false);
      t.add(r);
      if (!r.ok) {
        std::printf("%s: mutant %s (%s) caught at seed %" PRIu64 " after %" PRIu64
                    " seeds, %" PRIu64 " steps (%.2f s): %s\n  replay: %s --mutant %s --seed %" PRIu64
                    "\n",
                    test_name, p.mutant.c_str(), p.what.c_str(), s, s - first + 1, t.c.steps,
                    seconds_since(t0), first_line(r.failure).c_str(), argv[0], p.mutant.c_str(),
                    s);
        caught = true;
        break;
      }
    }
    if (!caught) {
      std::printf("%s: FAIL: mutant %s (%s) survived %" PRIu64
                  " seeds: the checker does not bite\n",
                  test_name, p.mutant.c_str(), p.what.c_str(), mutant_seeds);
      rc = 1;
    }
    std::fflush(stdout);
  }
  return rc;
}

} // namespace dsched
} // namespace palitra::detail
