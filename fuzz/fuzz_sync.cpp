// palitra — fuzz target: the loop-local primitives (event, mutex, semaphore,
// channel<int>) on a real runner, against a reference model.
//
// Input bytes decode into a program of at most 64 operations. Waiting is
// done by *actors*: tasks submitted to the runner that perform one wait and
// write how it ended into a record (pending / done / closed / cancelled,
// and the value a receiver got). Every other operation runs on the loop
// inside one r.run() that ends with a settle (16 yields), so when it returns
// every consequence of the op has run: no grant is outstanding, and the
// model can be a plain FIFO one (no reservations). After every op the model
// and palitra are compared: every actor's record, mutex::locked(),
// semaphore::available(), channel::size()/closed(), event::is_set().
//
// The same-tick races of the protocol (include/palitra/detail/waiter_list.hpp)
// are reached deterministically: a release followed, in the same loop
// callback, by future::cancel() of the waiter it granted (the request is
// visible before the waiter resumes: W4, give back), or the cancel first
// (requested, not yet delivered when the grant looks: W2, skip). In the
// model both orders mean "the front waiter is cancelled, then the release
// happens"; I4 (no trace) is exactly that equivalence.
//
// Encoding. Byte 0: semaphore's initial count (b % 3) and the channel's
// capacity (1 + b / 3 % 3). Then ops: one op byte (op % 16) and its argument
// bytes; past the end of the input the program stops.
//    0  actor: event wait          8  semaphore try_acquire
//    1  event set                  9  actor: channel send (value = a counter)
//    2  event clear               10  actor: channel recv
//    3  actor: mutex lock         11  channel close
//    4  mutex unlock (may throw)  12  future[i].cancel()            i
//    5  mutex try_lock            13  race: sub % 10 (below), then the
//    6  actor: semaphore acquire       grant-and-cancel pairs
//    7  semaphore release(n % 3)  14  driver recv (only if it cannot wait)
//                                 15  settle once more (no-op)
// Races (op 13, sub % 10; odd = cancel first (W2), even = release first (W4)):
//   0/1 mutex unlock + cancel front locker   2/3 semaphore release(1) + cancel
//   4/5 event set + cancel front waiter      6/7 driver send + cancel front receiver
//   8/9 driver recv + cancel front sender
// Each race runs only when the model says it makes sense (someone queued,
// the driver's send/recv would not wait).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include <palitra/palitra.hpp>

#include "fuzz_support.hpp"

namespace {

using palitra::task;
using palitra_fuzz::reader;

enum actor_kind : std::uint8_t { a_event, a_mutex, a_sem, a_send, a_recv };
enum actor_state : std::uint8_t { s_pending, s_done, s_closed, s_cancelled };

struct record {
  actor_kind kind;
  actor_state state = s_pending;
  int value = 0; // send: the value sent; recv: the value got, -1 for nullopt
};

struct prims {
  explicit prims(std::ptrdiff_t sem, std::size_t cap) : s(sem), ch(cap) {}
  palitra::event ev;
  palitra::mutex m;
  palitra::semaphore s;
  palitra::channel<int> ch;
};

task<void> actor(prims& p, record& r) {
  try {
    switch (r.kind) {
    case a_event: co_await p.ev.wait(); break;
    case a_mutex: co_await p.m.lock(); break;
    case a_sem: co_await p.s.acquire(); break;
    case a_send:
      try {
        co_await p.ch.send(r.value);
      } catch (const palitra::channel_closed_error&) {
        r.state = s_closed;
        co_return;
      }
      break;
    case a_recv: {
      std::optional<int> v = co_await p.ch.recv();
      r.value = v ? *v : -1;
      break;
    }
    }
    r.state = s_done;
  } catch (const palitra::cancelled_error&) {
    r.state = s_cancelled;
    throw;
  }
}

/// The reference: plain FIFO semantics, applied to the same records'
/// expected copies.
struct model {
  std::vector<record> want;
  bool ev_set = false;
  std::deque<std::size_t> ev_q;
  bool locked = false;
  std::deque<std::size_t> m_q;
  std::ptrdiff_t count = 0;
  std::deque<std::size_t> s_q;
  std::size_t cap = 1;
  bool closed = false;
  std::deque<int> buf;
  std::deque<std::size_t> send_q, recv_q;

  std::deque<std::size_t>& queue_of(actor_kind k) {
    switch (k) {
    case a_event: return ev_q;
    case a_mutex: return m_q;
    case a_sem: return s_q;
    case a_send: return send_q;
    case a_recv: break;
    }
    return recv_q;
  }
  void finish(std::size_t id, actor_state s, int v) {
    want[id].state = s;
    want[id].value = v;
  }
  std::size_t pop(std::deque<std::size_t>& q) {
    const std::size_t id = q.front();
    q.pop_front();
    return id;
  }

  void start(std::size_t id) {
    record& r = want[id];
    switch (r.kind) {
    case a_event:
      if (ev_set) return finish(id, s_done, 0);
      break;
    case a_mutex:
      if (!locked) {
        locked = true;
        return finish(id, s_done, 0);
      }
      break;
    case a_sem:
      if (count > 0) {
        --count;
        return finish(id, s_done, 0);
      }
      break;
    case a_send:
      if (closed) return finish(id, s_closed, r.value);
      if (try_send(r.value)) return finish(id, s_done, r.value);
      break;
    case a_recv:
      if (!buf.empty()) return finish(id, s_done, take());
      if (closed) return finish(id, s_done, -1);
      break;
    }
    queue_of(r.kind).push_back(id);
  }
  void set() {
    ev_set = true;
    while (!ev_q.empty()) finish(pop(ev_q), s_done, 0);
  }
  void unlock() {
    if (m_q.empty())
      locked = false;
    else
      finish(pop(m_q), s_done, 0);
  }
  void release(std::ptrdiff_t n) {
    for (; n > 0 && !s_q.empty(); --n) finish(pop(s_q), s_done, 0);
    count += n;
  }
  /// A send that does not wait: to the front receiver, or into the buffer.
  bool try_send(int v) {
    if (!recv_q.empty()) {
      finish(pop(recv_q), s_done, v);
      return true;
    }
    if (buf.size() < cap) {
      buf.push_back(v);
      return true;
    }
    return false;
  }
  /// A recv from a non-empty buffer: the front value; a queued sender refills.
  int take() {
    const int v = buf.front();
    buf.pop_front();
    if (!send_q.empty()) {
      const std::size_t s = pop(send_q);
      buf.push_back(want[s].value);
      finish(s, s_done, want[s].value);
    }
    return v;
  }
  void close() {
    closed = true;
    while (!send_q.empty()) {
      const std::size_t s = pop(send_q);
      finish(s, s_closed, want[s].value);
    }
    while (!recv_q.empty()) finish(pop(recv_q), s_done, -1);
  }
  /// future::cancel(): a queued actor leaves without a trace; a finished one
  /// is not affected.
  void cancel(std::size_t id) {
    if (want[id].state != s_pending) return;
    auto& q = queue_of(want[id].kind);
    for (auto it = q.begin(); it != q.end(); ++it)
      if (*it == id) {
        q.erase(it);
        break;
      }
    want[id].state = s_cancelled;
  }
};

struct harness {
  prims p;
  model mod;
  std::deque<record> got; // stable addresses: actors write into them
  std::vector<palitra::future<void>> futs;
  palitra::runner r;
  int next_value = 1;
  int driver_got = 0;

  harness(std::ptrdiff_t sem, std::size_t cap) : p(sem, cap) {
    mod.count = sem;
    mod.cap = cap;
  }

  void spawn_actor(actor_kind k) {
    if (got.size() >= 48) return;
    const int v = k == a_send ? next_value++ : 0;
    got.push_back(record{k, s_pending, v});
    mod.want.push_back(record{k, s_pending, v});
    futs.push_back(r.submit(actor(p, got.back())));
    mod.start(got.size() - 1);
    settle();
  }

  void settle() {
    settle_on_loop([]() -> task<void> { co_return; });
  }

  /// Runs `f` on the loop, then lets every consequence run (16 turns).
  template <class F> void settle_on_loop(F f) {
    r.run([&]() -> task<void> {
      co_await f();
      for (int i = 0; i < 16; ++i) co_await palitra::yield();
    });
  }

  std::optional<std::size_t> front_of(const std::deque<std::size_t>& q) const {
    if (q.empty()) return std::nullopt;
    return q.front();
  }

  /// A grant and the cancellation of the waiter it is meant for, in one
  /// loop callback, in either order; the model cancels first either way.
  template <class Release> void race(std::size_t victim, bool cancel_first, Release rel) {
    mod.cancel(victim);
    palitra::future<void>& f = futs[victim];
    settle_on_loop([&]() -> task<void> {
      if (cancel_first) f.cancel();
      co_await rel();
      if (!cancel_first) f.cancel();
    });
  }

  void compare() {
    for (std::size_t i = 0; i < got.size(); ++i) {
      FUZZ_CHECK(got[i].state == mod.want[i].state, "actor state");
      FUZZ_CHECK(got[i].value == mod.want[i].value, "actor value");
    }
    FUZZ_CHECK(p.ev.is_set() == mod.ev_set, "event::is_set");
    FUZZ_CHECK(p.m.locked() == mod.locked, "mutex::locked");
    FUZZ_CHECK(p.s.available() == mod.count, "semaphore::available");
    FUZZ_CHECK(p.ch.size() == mod.buf.size(), "channel::size");
    FUZZ_CHECK(p.ch.closed() == mod.closed, "channel::closed");
  }

  void step(reader& in) {
    switch (in.u8() % 16) {
    case 0: spawn_actor(a_event); break;
    case 1:
      mod.set();
      settle_on_loop([&]() -> task<void> { p.ev.set(); co_return; });
      break;
    case 2:
      mod.ev_set = false;
      settle_on_loop([&]() -> task<void> { p.ev.clear(); co_return; });
      break;
    case 3: spawn_actor(a_mutex); break;
    case 4: {
      const bool was_locked = mod.locked;
      bool threw = false;
      if (was_locked) mod.unlock();
      settle_on_loop([&]() -> task<void> {
        try {
          p.m.unlock();
        } catch (const palitra::error&) {
          threw = true;
        }
        co_return;
      });
      FUZZ_CHECK(threw == !was_locked, "mutex::unlock throws iff not locked");
      break;
    }
    case 5: {
      const bool want = !mod.locked;
      mod.locked = true;
      bool ok = false;
      settle_on_loop([&]() -> task<void> { ok = p.m.try_lock(); co_return; });
      FUZZ_CHECK(ok == want, "mutex::try_lock");
      break;
    }
    case 6: spawn_actor(a_sem); break;
    case 7: {
      const std::ptrdiff_t n = in.below(3);
      mod.release(n);
      settle_on_loop([&]() -> task<void> { p.s.release(n); co_return; });
      break;
    }
    case 8: {
      const bool want = mod.count > 0;
      if (want) --mod.count;
      bool ok = false;
      settle_on_loop([&]() -> task<void> { ok = p.s.try_acquire(); co_return; });
      FUZZ_CHECK(ok == want, "semaphore::try_acquire");
      break;
    }
    case 9: spawn_actor(a_send); break;
    case 10: spawn_actor(a_recv); break;
    case 11:
      mod.close();
      settle_on_loop([&]() -> task<void> { p.ch.close(); co_return; });
      break;
    case 12: {
      if (futs.empty()) break;
      const std::size_t i = in.u8() % futs.size();
      mod.cancel(i);
      futs[i].cancel();
      settle();
      break;
    }
    case 13: race_op(in.u8() % 10); break;
    case 14: {
      if (mod.buf.empty() && !mod.closed) break; // the driver must not wait
      const int want = mod.buf.empty() ? -1 : mod.take();
      int v = 0;
      settle_on_loop([&]() -> task<void> {
        auto x = co_await p.ch.recv();
        v = x ? *x : -1;
      });
      FUZZ_CHECK(v == want, "driver recv");
      break;
    }
    default: settle(); break;
    }
  }

  void race_op(unsigned sub) {
    const bool cancel_first = (sub & 1) != 0;
    switch (sub / 2) {
    case 0:
      if (!mod.locked || mod.m_q.empty()) return;
      race(mod.m_q.front(), cancel_first, [&]() -> task<void> { p.m.unlock(); co_return; });
      mod.unlock();
      break;
    case 1:
      if (mod.s_q.empty()) return;
      race(mod.s_q.front(), cancel_first, [&]() -> task<void> { p.s.release(1); co_return; });
      mod.release(1);
      break;
    case 2:
      if (mod.ev_q.empty()) return;
      race(mod.ev_q.front(), cancel_first, [&]() -> task<void> { p.ev.set(); co_return; });
      mod.set();
      break;
    case 3: {
      if (mod.recv_q.empty()) return; // then the buffer is empty: send cannot wait
      const int v = next_value++;
      race(mod.recv_q.front(), cancel_first, [&]() -> task<void> { co_await p.ch.send(v); });
      FUZZ_CHECK(mod.try_send(v), "model: driver send cannot wait");
      break;
    }
    default: {
      if (mod.send_q.empty() || mod.buf.empty()) return;
      int v = 0;
      race(mod.send_q.front(), cancel_first, [&]() -> task<void> {
        auto x = co_await p.ch.recv();
        v = x ? *x : -1;
      });
      FUZZ_CHECK(v == mod.take(), "driver recv (race)");
      break;
    }
    }
  }

  void finish() {
    r.close(); // every pending actor is cancelled (cancel.hpp T2 by close)
    std::size_t cancelled = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      if (mod.want[i].state == s_pending) mod.want[i].state = s_cancelled;
      FUZZ_CHECK(got[i].state == mod.want[i].state, "actor state after close");
      if (got[i].state == s_cancelled) ++cancelled;
    }
    const auto st = r.stats();
    FUZZ_CHECK(st.in_flight == 0, "in_flight after close");
    FUZZ_CHECK(st.submitted == st.completed + st.failed + st.cancelled, "counters balance");
    FUZZ_CHECK(st.cancelled == cancelled, "cancelled count");
    FUZZ_CHECK(st.failed == 0, "no call failed");
  }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  reader in(data, size);
  const std::uint8_t b = in.u8();
  harness h(b % 3, 1 + b / 3 % 3);
  for (int op = 0; op < 64 && !in.done(); ++op) {
    h.step(in);
    h.compare();
  }
  h.finish();
  return 0;
}
