// The reactor contract (core/reactor/reactor.hpp, invariants I1..I8): one
// typed suite run against every backend this host builds (epoll) and the
// scripted fake, then epoll-only cases over real pipes and socketpairs, then
// the loop's use of it. Every case ends with the process's fd count as it
// found it.
#include <cerrno>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <thread>
#include <utility>

#include "diag/fault.hpp"
#include "runtime/loop.hpp"
#include "reactor/reactor.hpp"
#include "reactor/reactor_fake.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using palitra_test::watchdog;
using namespace palitra::detail;

namespace {

/// Checks at scope exit that no fd leaked (declare it first in a case).
struct fd_balance {
  int before = palitra_test::open_fds();
  ~fd_balance() {
    if (std::uncaught_exceptions() == 0) CHECK(palitra_test::fds_settled(before) == before);
  }
};

/// An op that counts its reports and final completions, then runs `then`.
struct probe : io_op {
  int reports = 0;
  int finals = 0;
  std::function<void(probe&)> then;
  probe(io_kind k, io_handle& h, std::uint32_t watch_interest = 0) {
    kind = k;
    handle = &h;
    interest = watch_interest;
    complete = &on_complete;
  }
  static void on_complete(io_op& op) noexcept {
    auto& p = static_cast<probe&>(op);
    ++(op.done() ? p.finals : p.reports);
    if (p.then) p.then(p);
  }
};

void make_pipe(int (&p)[2]) { REQUIRE(::pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0); }
void close_pair(int (&p)[2]) {
  ::close(p[0]);
  ::close(p[1]);
}
void put_byte(int fd) { REQUIRE(::write(fd, "x", 1) == 1); }
void drain(int fd) {
  char buf[256];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
}

// ---- rigs: a backend plus two fds whose readability the test controls; both
// are always writable.

struct epoll_rig {
  reactor_epoll r;
  int s[2][2];
  epoll_rig() {
    for (auto& p : s)
      REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p) == 0);
  }
  ~epoll_rig() {
    for (auto& p : s) close_pair(p);
  }
  void attach(io_handle& h, int i) { REQUIRE(!r.attach(h, s[i][0])); }
  void readable(io_handle&, int i, bool on) { on ? put_byte(s[i][1]) : drain(s[i][0]); }
};

struct fake_rig {
  reactor_fake r;
  std::uint32_t level[2] = {io_out, io_out};
  void attach(io_handle& h, int i) {
    REQUIRE(!r.attach(h, 100 + i));
    r.set_ready(h, level[i]);
  }
  void readable(io_handle& h, int i, bool on) {
    level[i] = on ? level[i] | io_in : level[i] & ~io_in;
    r.set_ready(h, level[i]);
  }
};

/// A rig with one attached handle, and the fd check around it.
template <class Rig> struct one_handle {
  fd_balance fb; // first: checked after the rig closed its fds
  Rig g;
  io_handle h;
  one_handle() { g.attach(h, 0); }
};

} // namespace

// ---------------------------------------------------------------------------
// The typed suite: every backend.

TEMPLATE_TEST_CASE("reactor: a readiness op completes once per start, never inline", "[reactor]",
                   epoll_rig, fake_rig) {
  one_handle<TestType> t;
  auto& g = t.g;
  io_handle& h = t.h;
  probe op(io_kind::readable, h);
  g.r.start(op);
  REQUIRE(op.state == io_op_state::pending);
  REQUIRE(g.r.poll(0) == 0);
  g.readable(h, 0, true);
  REQUIRE(op.finals == 0); // I2
  REQUIRE(g.r.poll(0) == 1);
  REQUIRE(op.finals == 1);
  REQUIRE(op.done());
  REQUIRE(!op.error);
  REQUIRE((op.events & io_in) != 0);
  REQUIRE(g.r.poll(0) == 0); // still readable, but the op is one-shot
  REQUIRE(op.finals == 1);
  g.r.start(op); // restart while readable: still not inline (I2)
  REQUIRE(op.finals == 1);
  REQUIRE(g.r.poll(0) == 1);
  REQUIRE(op.finals == 2);
  REQUIRE(op.reports == 0);
  REQUIRE(g.r.pending_ops() == 0);
  g.r.detach(h);
  REQUIRE(g.r.attached() == 0);
}

TEMPLATE_TEST_CASE("reactor: a watch is level-triggered and persists until cancelled", "[reactor]",
                   epoll_rig, fake_rig) {
  one_handle<TestType> t;
  auto& g = t.g;
  io_handle& h = t.h;
  probe w(io_kind::watch, h, io_in);
  g.r.start(w);
  g.readable(h, 0, true);
  REQUIRE(g.r.poll(0) == 1);
  REQUIRE(w.reports == 1);
  REQUIRE(w.state == io_op_state::pending); // a report, not the end
  REQUIRE(g.r.poll(0) == 1);                // level: reported again
  REQUIRE(w.reports == 2);
  g.readable(h, 0, false);
  REQUIRE(g.r.poll(0) == 0);
  g.readable(h, 0, true);
  REQUIRE(g.r.poll(0) == 1);
  REQUIRE(w.reports == 3);
  g.r.cancel(w);
  REQUIRE(g.r.poll(0) == 1);
  REQUIRE(w.finals == 1);
  REQUIRE(w.cancelled());
  REQUIRE(w.reports == 3);
  REQUIRE(g.r.poll(0) == 0);
  REQUIRE(g.r.pending_ops() == 0);
  g.r.detach(h);
}

TEMPLATE_TEST_CASE("reactor: set_interest changes what a watch reports", "[reactor]", epoll_rig,
                   fake_rig) {
  one_handle<TestType> t;
  auto& g = t.g;
  io_handle& h = t.h;
  probe w(io_kind::watch, h, io_in);
  g.r.start(w);
  REQUIRE(g.r.poll(0) == 0); // writable, but only io_in is of interest
  g.r.set_interest(w, io_out);
  REQUIRE(g.r.poll(0) == 1);
  REQUIRE((w.events & io_out) != 0);
  g.r.set_interest(w, io_in);
  REQUIRE(g.r.poll(0) == 0);
  g.readable(h, 0, true);
  g.r.set_interest(w, 0); // the owner services nothing now: no reports at all
  REQUIRE(g.r.poll(0) == 0);
  g.r.set_interest(w, io_in | io_out);
  REQUIRE(g.r.poll(0) == 1);
  REQUIRE((w.events & (io_in | io_out)) == (io_in | io_out));
  // Changed from inside its own report: the next poll sees the new interest.
  w.then = [&](probe& p) {
    if (!p.done()) g.r.set_interest(p, 0);
  };
  REQUIRE(g.r.poll(0) == 1);
  REQUIRE(g.r.poll(0) == 0);
  g.r.cancel(w);
  REQUIRE(g.r.poll(0) == 1);
  REQUIRE(w.finals == 1);
  REQUIRE(w.reports == 3);
  g.r.detach(h);
}

TEMPLATE_TEST_CASE("reactor: cancel completes with cancelled exactly once, on a later poll",
                   "[reactor]", epoll_rig, fake_rig) {
  one_handle<TestType> t;
  auto& g = t.g;
  io_handle& h = t.h;
  probe op(io_kind::readable, h);
  g.r.start(op);
  g.r.cancel(op);
  REQUIRE(op.finals == 0); // I2: asynchronous
  REQUIRE(op.state == io_op_state::cancelling);
  g.r.cancel(op);               // I4: a second cancel does nothing
  g.readable(h, 0, true);       // readiness after cancel cannot revive it
  REQUIRE(g.r.poll(0) == 1);
  REQUIRE(op.finals == 1);
  REQUIRE(op.cancelled());
  REQUIRE(op.error == std::errc::operation_canceled);
  g.r.cancel(op); // of a completed op: nothing
  REQUIRE(g.r.poll(0) == 0);
  REQUIRE(op.finals == 1);

  // Cancelled from a completion in the poll that harvested it: it completes
  // as cancelled, in the next poll (I4, I6).
  probe a(io_kind::readable, h), b(io_kind::readable, h);
  a.then = [&](probe&) { g.r.cancel(b); };
  b.then = [&](probe&) { g.r.cancel(a); };
  g.r.start(a);
  g.r.start(b);
  REQUIRE(g.r.poll(0) == 1);
  probe& first = a.finals == 1 ? a : b;
  probe& second = a.finals == 1 ? b : a;
  REQUIRE(!first.error);
  REQUIRE(second.finals == 0);
  REQUIRE(g.r.poll(0) == 1);
  REQUIRE(second.finals == 1);
  REQUIRE(second.cancelled());
  REQUIRE(g.r.pending_ops() == 0);
  g.r.detach(h);
}

TEMPLATE_TEST_CASE("reactor: detach cancels pending ops, which still complete", "[reactor]",
                   epoll_rig, fake_rig) {
  one_handle<TestType> t;
  auto& g = t.g;
  io_handle& h = t.h;
  probe r(io_kind::readable, h), w(io_kind::watch, h, io_in | io_out);
  g.r.start(r);
  g.r.start(w);
  g.readable(h, 0, true);
  g.r.detach(h);
  REQUIRE(!h.attached);
  REQUIRE(g.r.attached() == 0);
  REQUIRE(r.finals + w.finals == 0); // I2
  REQUIRE(g.r.poll(0) == 2);
  REQUIRE(r.cancelled());
  REQUIRE(w.cancelled());
  REQUIRE(w.reports == 0);
  REQUIRE(g.r.pending_ops() == 0);
  g.r.detach(h); // idempotent
  REQUIRE(g.r.poll(0) == 0);
}

TEMPLATE_TEST_CASE("reactor: readiness harvested in the batch that detached its handle completes "
                   "cancelled",
                   "[reactor]", epoll_rig, fake_rig) {
  fd_balance fb;
  TestType g;
  io_handle h[2];
  std::unique_ptr<probe> op[2];
  for (int i = 0; i < 2; ++i) {
    g.attach(h[i], i);
    op[i] = std::make_unique<probe>(io_kind::readable, h[i]);
    // Whichever completes first detaches the other's handle (I5).
    op[i]->then = [&, i](probe&) {
      if (h[1 - i].attached) g.r.detach(h[1 - i]);
    };
    g.r.start(*op[i]);
    g.readable(h[i], i, true);
  }
  REQUIRE(g.r.poll(0) == 1); // both were harvested; one is dispatched
  const int first = op[0]->finals == 1 ? 0 : 1;
  REQUIRE(!op[first]->error);
  REQUIRE(op[1 - first]->finals == 0);
  REQUIRE(g.r.poll(0) == 1);
  REQUIRE(op[1 - first]->finals == 1);
  REQUIRE(op[1 - first]->cancelled());
  g.r.detach(h[first]);
  REQUIRE(g.r.pending_ops() == 0);
  REQUIRE(g.r.attached() == 0);
}

TEMPLATE_TEST_CASE("reactor: a poll with completions due does not block", "[reactor]", epoll_rig,
                   fake_rig) {
  watchdog wd(30s);
  one_handle<TestType> t;
  auto& g = t.g;
  io_handle& h = t.h;
  probe op(io_kind::readable, h);
  g.r.start(op);
  REQUIRE(g.r.poll(0) == 0); // nothing ready: returns at once
  g.r.cancel(op);
  REQUIRE(g.r.poll(-1) == 1); // I6: would hang (the watchdog) if it slept
  g.r.detach(h);
}

// ---------------------------------------------------------------------------
// epoll only: real fds.

TEST_CASE("reactor: epoll: a reused fd number gets no event of the detached handle",
          "[reactor][epoll]") {
  fd_balance fb;
  reactor_epoll r;
  int p[2];
  make_pipe(p);
  io_handle h;
  REQUIRE(!r.attach(h, p[0]));
  probe w(io_kind::watch, h, io_in);
  r.start(w);
  put_byte(p[1]); // readable, never polled
  const int old = p[0];
  r.detach(h); // before close (I5)
  close_pair(p);
  int q[2];
  make_pipe(q);
  REQUIRE(q[0] == old); // the lowest free number comes back
  io_handle h2;
  REQUIRE(!r.attach(h2, q[0]));
  probe w2(io_kind::watch, h2, io_in);
  r.start(w2);
  REQUIRE(r.poll(0) == 1); // only the old watch's cancellation
  REQUIRE(w.cancelled());
  REQUIRE(w.reports == 0);
  REQUIRE(w2.reports + w2.finals == 0);
  REQUIRE(r.poll(0) == 0);
  // The same io_handle object (same address) on the new fd.
  r.detach(h2);
  REQUIRE(r.poll(0) == 1);
  REQUIRE(!r.attach(h, q[0]));
  probe w3(io_kind::watch, h, io_in);
  r.start(w3);
  REQUIRE(r.poll(0) == 0);
  put_byte(q[1]);
  REQUIRE(r.poll(0) == 1);
  REQUIRE(w3.reports == 1);
  r.detach(h);
  REQUIRE(r.poll(0) == 1);
  close_pair(q);
}

TEST_CASE("reactor: epoll: a handle detached, closed and reused within one batch gets no stale "
          "event",
          "[reactor][epoll]") {
  fd_balance fb;
  reactor_epoll r;
  int p[2][2];
  make_pipe(p[0]);
  make_pipe(p[1]);
  io_handle h[2];
  std::unique_ptr<probe> op[2], fresh;
  // The first completion of the batch detaches the other handle, closes its
  // pipe, opens a new one on the same number, attaches the *same* io_handle
  // to it and starts a fresh op there: the other's event, already harvested
  // in this batch, must reach neither the old op as ready nor the fresh one.
  auto swap_other = [&](int other) {
    if (fresh) return;
    const int old = p[other][0];
    r.detach(h[other]);
    close_pair(p[other]);
    make_pipe(p[other]);
    CHECK(p[other][0] == old);
    REQUIRE(!r.attach(h[other], p[other][0]));
    fresh = std::make_unique<probe>(io_kind::readable, h[other]);
    r.start(*fresh);
  };
  for (int i = 0; i < 2; ++i) {
    REQUIRE(!r.attach(h[i], p[i][0]));
    op[i] = std::make_unique<probe>(io_kind::readable, h[i]);
    op[i]->then = [&, i](probe&) { swap_other(1 - i); };
    r.start(*op[i]);
    put_byte(p[i][1]);
  }
  REQUIRE(r.poll(0) == 1);
  const int first = op[0]->finals == 1 ? 0 : 1;
  REQUIRE(!op[first]->error);
  REQUIRE(op[1 - first]->finals == 0);
  REQUIRE(fresh->finals == 0);
  REQUIRE(r.poll(0) == 1); // the other's cancellation
  REQUIRE(op[1 - first]->cancelled());
  REQUIRE(fresh->finals == 0);
  REQUIRE(r.poll(0) == 0);
  r.detach(h[0]);
  r.detach(h[1]);
  REQUIRE(r.poll(0) == 1);
  REQUIRE(fresh->cancelled());
  close_pair(p[0]);
  close_pair(p[1]);
}

TEST_CASE("reactor: epoll: a dup()ed fd has its own registration", "[reactor][epoll]") {
  fd_balance fb;
  reactor_epoll r;
  int p[2];
  make_pipe(p);
  const int d = ::dup(p[0]);
  REQUIRE(d >= 0);
  io_handle h1, h2;
  REQUIRE(!r.attach(h1, p[0]));
  REQUIRE(!r.attach(h2, d)); // same file description, another entry
  probe o1(io_kind::readable, h1), o2(io_kind::readable, h2);
  r.start(o1);
  r.start(o2);
  put_byte(p[1]);
  REQUIRE(r.poll(0) == 2);
  r.start(o1);
  r.start(o2);
  r.detach(h1);
  ::close(p[0]); // the description stays open through d
  REQUIRE(r.poll(0) == 2);
  REQUIRE(o1.cancelled()); // nothing for the detached handle but its cancel
  REQUIRE(!o2.error);
  REQUIRE(o1.finals == 2);
  REQUIRE(o2.finals == 2);
  r.start(o2);
  REQUIRE(r.poll(0) == 1);
  r.detach(h2);
  ::close(d);
  ::close(p[1]);
}

TEST_CASE("reactor: epoll: a peer's close completes readiness ops and does not spin",
          "[reactor][epoll]") {
  watchdog wd(30s);
  fd_balance fb;
  reactor_epoll r;
  int s[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, s) == 0);
  char buf[4096] = {};
  while (::write(s[0], buf, sizeof buf) > 0) {
  } // full: not writable
  io_handle h;
  REQUIRE(!r.attach(h, s[0]));
  probe rd(io_kind::readable, h), wr(io_kind::writable, h);
  r.start(rd);
  r.start(wr);
  REQUIRE(r.poll(0) == 0);
  ::close(s[1]);
  REQUIRE(r.poll(0) == 2);
  REQUIRE(!rd.error);
  REQUIRE((rd.events & (io_in | io_hup)) != 0);
  REQUIRE((wr.events & (io_out | io_err | io_hup)) != 0);
  // Nobody waits now: the hung-up fd must let poll sleep (I7). Lazy disarm
  // allows at most two stray reports, so 8 polls of 25 ms sleep >= 100 ms.
  const auto t0 = std::chrono::steady_clock::now();
  int dispatched = 0;
  for (int i = 0; i < 8; ++i) dispatched += r.poll(25'000'000);
  REQUIRE(dispatched == 0);
  REQUIRE(std::chrono::steady_clock::now() - t0 >= 100ms);
  r.detach(h);
  ::close(s[0]);
}

TEST_CASE("reactor: epoll: wake from another thread ends a blocking poll", "[reactor][epoll]") {
  watchdog wd(30s);
  fd_balance fb;
  reactor_epoll r;
  r.wake();
  REQUIRE(r.poll(-1) == 0); // a wake before the poll counts
  std::thread t([&] {
    std::this_thread::sleep_for(20ms);
    r.wake();
  });
  REQUIRE(r.poll(-1) == 0); // returns (the watchdog catches a hang)
  t.join();
  r.close();
  REQUIRE(r.handle_count() == 0);
}

TEST_CASE("reactor: epoll: a refused epoll_pwait2 falls back to epoll_wait", "[reactor][epoll]") {
  watchdog wd(30s);
  fd_balance fb;
  const int err = GENERATE(EPERM, ENOSYS);
  fault::fail_epoll_pwait2(err);
  {
    reactor_epoll r;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 3; ++i) REQUIRE(r.poll(20'000'000) == 0);
    fault::fail_epoll_pwait2(0);
    REQUIRE(std::chrono::steady_clock::now() - t0 >= 60ms); // slept every time
  }
}

// ---------------------------------------------------------------------------
// The scripted backend itself.

TEST_CASE("reactor: fake: records calls and the timeout a poll would have slept", "[reactor]") {
  fd_balance fb; // the fake holds no OS resources
  reactor_fake r;
  io_handle h;
  REQUIRE(!r.attach(h, 7));
  REQUIRE(h.fd == 7);
  io_handle bad;
  REQUIRE(r.attach(bad, -1) == std::errc::bad_file_descriptor);
  REQUIRE(!bad.attached);
  probe op(io_kind::readable, h);
  r.start(op);
  r.cancel(op);
  REQUIRE(r.poll(5'000'000) == 1); // due: not a sleep
  REQUIRE(r.calls().sleeps == 0);
  REQUIRE(r.poll(7'000'000) == 0);
  REQUIRE(r.calls().sleeps == 1);
  REQUIRE(r.last_sleep_ns() == 7'000'000);
  std::thread t([&] { r.wake(); });
  t.join();
  REQUIRE(r.poll(-1) == 0); // woken: not a sleep
  REQUIRE(r.calls().sleeps == 1);
  REQUIRE(r.wakes() == 1);
  r.detach(h);
  const auto& c = r.calls();
  REQUIRE(c.attach == 2);
  REQUIRE(c.start == 1);
  REQUIRE(c.cancel == 1);
  REQUIRE(c.detach == 1);
  REQUIRE(c.poll == 3);
}

TEST_CASE("reactor: fake: a refused start completes with its error on the next poll",
          "[reactor]") {
  fd_balance fb;
  reactor_fake r;
  io_handle h;
  REQUIRE(!r.attach(h, 3));
  probe op(io_kind::readable, h);
  r.fail_next_start(std::make_error_code(std::errc::not_enough_memory));
  r.start(op);
  REQUIRE(op.finals == 0); // I2
  REQUIRE(r.poll(0) == 1);
  REQUIRE(op.error == std::errc::not_enough_memory);
  REQUIRE(!op.cancelled());
  r.detach(h);
}

TEST_CASE("reactor: fake: the loop's pass step polls only with I/O pending and never starves it",
          "[reactor]") {
  // loop::run's I/O step (poll_pass) against a ready queue that never
  // empties: every pass has work, so the loop never reaches idle().
  fd_balance fb;
  reactor_fake r;
  io_handle h;
  REQUIRE(!r.attach(h, 3));
  for (int pass = 0; pass < 100; ++pass) poll_pass(r); // nothing pending
  REQUIRE(r.calls().poll == 0);                         // no syscall on epoll
  probe op(io_kind::readable, h);
  r.start(op);
  int completed_at = -1;
  for (int pass = 0; pass < 100 && completed_at < 0; ++pass) {
    if (pass == 10) r.set_ready(h, io_in);
    poll_pass(r);
    if (op.finals == 1) completed_at = pass;
  }
  REQUIRE(completed_at == 10);
  REQUIRE(r.calls().sleeps == 0);
  for (int pass = 0; pass < 100; ++pass) poll_pass(r);
  REQUIRE(r.calls().poll == 11); // nothing pending again
  r.detach(h);
}

// ---------------------------------------------------------------------------
// The loop.

namespace {

palitra::task<long> busy_until_readable() {
  reactor& io = current_loop()->io();
  int p[2];
  make_pipe(p);
  io_handle h;
  REQUIRE(!io.attach(h, p[0]));
  probe op(io_kind::readable, h);
  io.start(op);
  put_byte(p[1]);
  // Every pass leaves this coroutine in the ready queue, so the loop never
  // goes idle: only the per-pass poll can complete the op.
  long spins = 0;
  while (op.finals == 0 && spins < 100'000) {
    co_await palitra::yield();
    ++spins;
  }
  io.detach(h);
  close_pair(p);
  co_return op.finals == 1 ? spins : -1;
}

palitra::task<std::uint64_t> busy_without_io() {
  reactor& io = current_loop()->io();
  const std::uint64_t w0 = io.wait_calls();
  for (int i = 0; i < 10'000; ++i) co_await palitra::yield();
  co_return io.wait_calls() - w0;
}

palitra::task<int> nothing() { co_return 0; }

} // namespace

TEST_CASE("reactor: fake: parked watches with interest 0 do not make busy passes poll",
          "[reactor]") {
  // An idle keep-alive pool: curl parks each cached connection's watch with
  // interest 0. A pure run() load beside it must stay syscall-free.
  fd_balance fb;
  reactor_fake r;
  io_handle h;
  REQUIRE(!r.attach(h, 3));
  probe w(io_kind::watch, h, 0);
  r.start(w);
  r.set_ready(h, io_in | io_out | io_hup);
  REQUIRE(r.pending_ops() == 1);
  REQUIRE(r.active_ops() == 0);
  for (int pass = 0; pass < 100; ++pass) poll_pass(r);
  REQUIRE(r.calls().poll == 0);
  r.set_interest(w, io_in); // the library wants to read: polled again
  REQUIRE(r.active_ops() == 1);
  REQUIRE(poll_pass(r) == 1);
  REQUIRE(w.reports == 1);
  r.set_interest(w, 0);
  REQUIRE(r.active_ops() == 0);
  r.cancel(w); // a cancelled quiet watch must complete: active again
  REQUIRE(r.active_ops() == 1);
  REQUIRE(poll_pass(r) == 1);
  REQUIRE(w.finals == 1);
  REQUIRE(r.pending_ops() == 0);
  REQUIRE(r.active_ops() == 0);
  probe f(io_kind::watch, h, 0);
  r.start(f);
  REQUIRE(r.active_ops() == 0);
  r.forget(f); // I9 on a quiet watch
  REQUIRE(r.pending_ops() == 0);
  REQUIRE(r.active_ops() == 0);
  r.detach(h);
}

TEST_CASE("reactor: a loop whose ready queue never empties still dispatches I/O completions",
          "[reactor][loop]") {
  watchdog wd(60s);
  fd_balance fb;
  palitra::runner r;
  const long spins = r.run(busy_until_readable());
  INFO("spins " << spins);
  REQUIRE(spins >= 0);
  REQUIRE(spins <= 2); // the next pass polls
  REQUIRE(r.run(busy_without_io()) == 0); // busy passes with no I/O: no epoll syscall
  r.close();
  palitra_test::require_quiet(r.stats());
}

TEST_CASE("reactor: the loop still sleeps when epoll_pwait2 fails with EPERM", "[reactor][loop]") {
  watchdog wd(60s);
  fd_balance fb;
  fault::fail_epoll_pwait2(EPERM); // a seccomp filter older than the syscall
  {
    // No hand-over phase: each idle pass goes straight to the reactor, so a
    // reactor that does not sleep shows as ~10^5 passes, not ~10^3 yields.
    palitra::runner_options o;
    o.loop_spin = 0ns;
    palitra::runner r(o);
    REQUIRE(r.run(nothing()) == 0);
    std::this_thread::sleep_for(50ms); // past the idle hand-over phase
    const auto before = r.stats().loop_iterations;
    std::this_thread::sleep_for(200ms);
    const auto passes = r.stats().loop_iterations - before;
    INFO("loop passes while idle for 200 ms: " << passes);
    REQUIRE(passes < 50); // asleep: 0 expected; a spinning loop makes millions
  }
  fault::fail_epoll_pwait2(0);
}

namespace {

// A stand-in for a foreign library that owns its fd and tells the loop what
// to watch (libcurl's CURL_POLL_IN / OUT / INOUT / REMOVE, libpq's
// "wait for read or write"): it keeps one persistent watch, changes its
// interest, removes it, and closes the fd itself afterwards.
struct foreign_owner {
  int fd[2] = {-1, -1}; // the library's socket and its peer
  io_handle h;
  probe w{io_kind::watch, h};
  palitra::event reported;
  foreign_owner() {
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fd) == 0);
    w.then = [this](probe&) { reported.set(); };
  }
  ~foreign_owner() { close_fds(); }
  void close_fds() {
    for (int& f : fd)
      if (f >= 0) ::close(std::exchange(f, -1));
  }
};

// The next report (or final completion) of `o`'s watch.
palitra::task<void> next_report(foreign_owner& o) {
  o.reported.clear();
  co_await o.reported.wait();
}

palitra::task<void> foreign_owner_cycle() {
  reactor& r = current_loop()->io();
  foreign_owner a;
  REQUIRE(!r.attach(a.h, a.fd[0])); // add
  a.w.interest = io_in;
  r.start(a.w);
  put_byte(a.fd[1]);
  co_await next_report(a);
  REQUIRE(a.w.reports == 1);
  REQUIRE((a.w.events & io_in) != 0);
  drain(a.fd[0]);
  r.set_interest(a.w, io_out); // change: the socket is writable at once
  co_await next_report(a);
  REQUIRE((a.w.events & io_out) != 0);
  r.set_interest(a.w, 0);       // the owner services nothing for now
  put_byte(a.fd[1]);            // readable again, but not of interest
  co_await palitra::sleep_for(20ms);
  const int reports = a.w.reports;
  co_await palitra::sleep_for(20ms);
  REQUIRE(a.w.reports == reports); // no report while the interest is 0
  r.cancel(a.w);                  // remove
  co_await next_report(a);
  REQUIRE(a.w.finals == 1);
  REQUIRE(a.w.cancelled());
  r.detach(a.h);
  const int old_fd = a.fd[0];
  a.close_fds(); // the owner closes after remove, with data still unread

  // A new owner gets the same fd number at once: only its own events reach it.
  foreign_owner b;
  if (b.fd[0] != old_fd && b.fd[1] != old_fd) WARN("the fd number was not reused");
  REQUIRE(!r.attach(b.h, b.fd[0]));
  b.w.interest = io_in;
  r.start(b.w);
  co_await palitra::sleep_for(20ms);
  REQUIRE(b.w.reports == 0); // a's pending data and readiness did not follow the number
  REQUIRE(a.w.reports == reports);
  put_byte(b.fd[1]);
  co_await next_report(b);
  REQUIRE(b.w.reports == 1);
  r.cancel(b.w);
  co_await next_report(b);
  r.detach(b.h);
}

} // namespace

TEST_CASE("reactor: a foreign owner's watch on a running loop: add change remove then the owner "
          "closes",
          "[reactor][loop]") {
  watchdog wd(30s);
  fd_balance fb;
  palitra::runner r;
  r.run(foreign_owner_cycle());
  r.close();
  palitra_test::require_quiet(r.stats());
}
