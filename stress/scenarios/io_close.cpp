// stress scenario io_close (issue #9: "close() while 200 connections are
// mid-transfer and 16 sync threads call in"; DESIGN.md §4 "close()", §2
// "Loop-affine objects").
//
// Per round: a fresh runner; a listener on 127.0.0.1 whose accept loop runs
// as a spawned task and spawns an echo task per connection; 200 client
// connections, each a spawned task that streams 16 KiB chunks and reads
// them back without pause (mid-transfer when close() comes); 16 sync
// threads, each keeping ONE connection of its own on the loop (created by
// its first run(), reused by every later call, destroyed on the sync thread
// at the end, after close(): the in-place path of the cleanup hand-off) and
// calling run(request) in a loop; close() from another thread at a random
// moment (50-250 ms after the start,
// x the sanitizer time multiplier).
// Pass, per round:
//   - every sync call ends in its echoed value or runner_closed_error (a
//     call's connection torn down by close() mid-request may instead see
//     io_error: counted, allowed), never a hang;
//   - no task reaches on_unhandled_error (the echo and client tasks handle
//     their peers' closes; close() itself is never reported);
//   - runner_stats balance;
//   - close() returns within 2 s (x multiplier);
//   - over the run, sync calls completed (else close() came too early to
//     test anything);
//   - once the runner and every stream are gone, the process's fd count is
//     back where it started (no socket, epoll or eventfd leaked).
// Scale: 20 rounds (x0.5 under TSan and ASan); --long: x20.
#include <dirent.h>
#include <sys/resource.h>

#include <palitra/net.hpp>

#include "scenario.hpp"

namespace {

using namespace scenario;
using palitra::task;
using palitra::net::tcp_listener;
using palitra::net::tcp_stream;

constexpr long sync_threads = 16;
constexpr int clients = 200;

int open_fds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d) != nullptr) ++n;
    closedir(d);
  }
  return n - 3;
}

std::span<const std::byte> as_bytes_of(const std::uint64_t& v) {
  return std::as_bytes(std::span<const std::uint64_t, 1>(&v, 1));
}

// Echo until EOF or an error of the peer's making (it was closed by close()).
task<void> echo(tcp_stream s) {
  std::vector<std::byte> buf(16 * 1024);
  try {
    for (;;) {
      const std::size_t n = co_await s.read_some(buf);
      if (n == 0) co_return;
      co_await s.write_all(std::span<const std::byte>(buf.data(), n));
    }
  } catch (const palitra::io_error&) {
  }
}

task<void> acceptor(palitra::runner& r, tcp_listener& l) {
  for (;;) {
    tcp_stream s = co_await l.accept();
    try {
      r.spawn(echo(std::move(s)));
    } catch (const palitra::runner_closed_error&) {
      co_return; // close() began: this accept loop ends with it
    }
  }
}

// Streams without pause until close() cancels it.
task<void> streamer(std::uint16_t port, std::uint64_t seed) {
  tcp_stream s = co_await tcp_stream::connect("127.0.0.1", port);
  std::vector<std::byte> out(16 * 1024), in(out.size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>(seed + i);
  try {
    for (;;) {
      co_await palitra::when_all(s.write_all(out), s.read_exact(in));
      if (in != out) fail("streamer: the echo differs from what was sent");
    }
  } catch (const palitra::io_error&) {
  }
}

// A sync thread's request on its own kept connection.
task<std::uint64_t> request(tcp_stream& s, std::uint16_t port, std::uint64_t arg) {
  if (!s.is_open()) s = co_await tcp_stream::connect("127.0.0.1", port);
  co_await s.write_all(as_bytes_of(arg));
  std::uint64_t back = 0;
  co_await s.read_exact(std::as_writable_bytes(std::span<std::uint64_t, 1>(&back, 1)));
  co_return back;
}

struct totals {
  std::atomic<std::uint64_t> values{0}, closed{0}, io_errors{0};
  double max_close_s = 0;
};

void caller(palitra::runner& r, std::uint16_t port, std::uint64_t seed, long t,
            const std::atomic<bool>& go, totals& tot) {
  thread_slot me(t);
  me.state("waiting for the start signal");
  rng g(seed, static_cast<std::uint64_t>(t));
  tcp_stream conn; // kept across calls, destroyed here after close()
  while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
  for (std::uint64_t i = 0;; ++i) {
    const std::uint64_t arg = g.next();
    try {
      auto in = me.enter("run(request)", i, arg);
      const std::uint64_t v = r.run(request(conn, port, arg));
      if (v != arg) fail("thread %ld call %" PRIu64 ": echoed %" PRIu64 " for %" PRIu64, t, i, v, arg);
      tot.values.fetch_add(1, std::memory_order_relaxed);
    } catch (const palitra::runner_closed_error&) {
      tot.closed.fetch_add(1, std::memory_order_relaxed);
      return;
    } catch (const palitra::io_error&) {
      // close() tore the connection down in the middle of a request.
      tot.io_errors.fetch_add(1, std::memory_order_relaxed);
      conn.close();
    } catch (const std::exception& e) {
      fail("thread %ld call %" PRIu64 ": unexpected %s", t, i, e.what());
      return;
    }
  }
}

void run_round(const params& p, long round, totals& tot) {
  rng g(p.seed, 0x10c105e0000ull + static_cast<std::uint64_t>(round));
  const int fds_before = open_fds();
  palitra::runner_options o;
  o.name = "io_close";
  if (g.percent(50)) o.loop_spin = 0ns;
  std::atomic<long> unhandled{0};
  o.on_unhandled_error = [&unhandled](std::exception_ptr e) {
    unhandled.fetch_add(1);
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      say(stderr, "unhandled: %s\n", x.what());
    }
  };
  // Late enough that sync calls complete first (a pass over 400 busy sockets
  // takes ~1.5 ms here, a request ~5 passes), scaled like every deadline.
  const auto close_after =
      std::chrono::nanoseconds(g.range(50'000'000, 250'000'000)) * time_multiplier();
  palitra::runner_stats s;
  double close_s = 0;
  {
    palitra::runner r(o);
    auto listener = tcp_listener::bind("127.0.0.1", 0, 1024);
    const std::uint16_t port = listener.port();
    r.spawn(acceptor(r, listener));
    for (int i = 0; i < clients; ++i) r.spawn(streamer(port, g.next()));
    std::atomic<bool> go{false};
    std::vector<std::thread> ths;
    for (long t = 0; t < sync_threads; ++t)
      ths.emplace_back(caller, std::ref(r), port, p.seed ^ static_cast<std::uint64_t>(round), t,
                       std::cref(go), std::ref(tot));
    go.store(true, std::memory_order_release);
    std::this_thread::sleep_for(close_after); // the moment close() comes: not a wait for work
    {
      thread_slot me(sync_threads);
      auto in = me.enter("runner::close", static_cast<std::uint64_t>(round), 0);
      const auto c0 = steady::now();
      r.close();
      close_s = std::chrono::duration<double>(steady::now() - c0).count();
    }
    for (auto& th : ths) th.join();
    s = r.stats();
  } // the listener goes after its runner closed: closed in place (loop_anchor H2)
  char what[64];
  std::snprintf(what, sizeof what, "io_close round %ld", round);
  SCENARIO_CHECK(s.in_flight == 0 && s.submitted == s.completed + s.failed + s.cancelled,
                 "%s: stats do not balance: %s", what, stats_line(s).c_str());
  SCENARIO_CHECK(unhandled.load() == 0, "%s: %ld tasks reached on_unhandled_error", what,
                 unhandled.load());
  const double m = time_multiplier();
  SCENARIO_CHECK(close_s < 2.0 * m, "%s: close() took %.3f s", what, close_s);
  int fds_after = open_fds();
  for (int i = 0; i < 400 && fds_after != fds_before; ++i) { // a sanitizer's transient fd
    std::this_thread::sleep_for(5ms);
    fds_after = open_fds();
  }
  SCENARIO_CHECK(fds_after == fds_before, "%s: %d fds before the round, %d after", what,
                 fds_before, fds_after);
  tot.max_close_s = std::max(tot.max_close_s, close_s);
}

} // namespace

int main(int argc, char** argv) {
  const params p = parse(argc, argv);
  const long rounds = p.rounds_or(20, 3);
  const auto start = steady::now();
  // 200 clients + 200 echoes + 16 kept connections (x2) + slack per round.
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < 2048) {
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 2048);
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
  print_header("io_close", p, sync_threads, "until-close",
               "rounds=" + std::to_string(rounds) + " connections=" + std::to_string(clients) +
                   " close_at=50-250ms");
  watchdog wd(p, "io_close", {10s, 20s, 240s});
  totals tot;
  wd.phase("rounds");
  for (long i = 0; i < rounds && failures().load() == 0; ++i) run_round(p, i, tot);
  SCENARIO_CHECK(tot.values.load() > 0, "no sync call completed before close() in %ld rounds: the "
                                        "scenario did not exercise calls in flight", rounds);
  say(stdout,
      "  rounds=%ld sync_values=%" PRIu64 " sync_closed=%" PRIu64 " sync_io_errors=%" PRIu64
      " max_close=%.3fs\n",
      rounds, tot.values.load(), tot.closed.load(), tot.io_errors.load(), tot.max_close_s);
  return finish("io_close", p, start,
                "rounds=" + std::to_string(rounds) + " values=" + std::to_string(tot.values.load()));
}
