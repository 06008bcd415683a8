// palitra bench — TCP echo on one loop, palitra's net API side by side with
// asio's C++20 coroutines, in one process and one run (issue #9).
//
// Both systems run the same client and the same server on ONE thread:
//   palitra  one palitra::runner (default options); the server spawns a task
//            per accepted connection (runner::spawn), clients are spawned
//            tasks too; net::tcp_stream read_some / read_exact / write_all.
//   asio     one io_context(1) on one thread kept alive by a work guard;
//            co_spawn(detached) per connection and per client,
//            asio::use_awaitable (redirect_error where EOF is expected, so
//            no exception is thrown per connection); TCP_NODELAY on both
//            ends, as palitra sets it.
// A server session reads what is there into a 256-byte buffer in its frame
// and writes it back, until EOF. 127.0.0.1 only. Listeners use backlog 1024
// on both sides, so 256 simultaneous connects never wait for a SYN retry.
//
// Metrics, per system and round:
//   round trips/s @C   C connections (1, 16, 256); each client writes
//                      --bytes (64) and read_exact's them back, in a loop.
//                      Once every client is connected: --warmup seconds,
//                      then round trips completed (all clients) over
//                      --seconds of wall time.
//   allocs/round trip  global allocation calls (malloc & co., operator new;
//                      alloc_count.hpp) by every thread over --alloc-trips
//                      round trips on one established connection after
//                      --alloc-trips/10 warm-up trips, counted from inside
//                      the client coroutine. palitra's coroutine frames come
//                      from its own frame allocator on a privately loaded
//                      mimalloc, which is not the global allocator: not
//                      counted (0 means "no call into the host's malloc").
//   accepts/s          --accept-conns (16) clients each loop: connect, wait
//                      for EOF, close; the server loops: accept, close at
//                      once. Cycles completed over --seconds. The server
//                      closes first, so TIME_WAIT sits on the listener's
//                      side and client ports are never exhausted.
//   bytes/idle conn    in a forked child (fresh heap): --idle (2000)
//                      connected pairs, each with a server session
//                      suspended in read_some and the client stream held in
//                      a vector reserved beforehand; ΔRSS (/proc/self/statm)
//                      ÷ pairs. Both ends of a connection live in the
//                      process, so this is per connection, not per socket.
//                      Kernel socket buffers are not in RSS. Also global
//                      allocation calls ÷ pairs.
// Rounds: every round runs both systems once (the order alternates); tables
// show the median over rounds, ratios (palitra ÷ asio) are taken within a
// round and then the median is shown.
// Scaling: per system and round ≈ 4 × (--warmup + --seconds) + the
// allocation pass + the idle child (~0.3 s): the defaults (5 rounds, 1 s,
// 0.25 s) take about a minute; --quick takes ~10 s.
#include <sys/resource.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <asio.hpp>
#include <asio/version.hpp>

#include <palitra/detail/frame_allocator.hpp>
#include <palitra/palitra.hpp>

#include "alloc_count.hpp"
#include "bench_util.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using palitra_bench::nan_v;

constexpr std::array<int, 3> conn_counts{1, 16, 256};
constexpr std::size_t session_buf = 256;
constexpr std::size_t max_bytes = 4096;
constexpr int backlog = 1024;
/// How long setup and teardown may take before the run is declared hung.
constexpr auto phase_limit = 30s;

struct config {
  int rounds = 5;
  double seconds = 1.0;
  double warmup = 0.25;
  std::size_t bytes = 64;
  std::size_t alloc_trips = 10000;
  int accept_conns = 16;
  int idle = 2000;
  std::string csv;
  std::string only;   // --systems: comma-separated; empty = both
  std::string phases; // --phases: rt,alloc,accept,idle; empty = all
  std::string conns;  // --conns: which of 1,16,256 the rt phase runs; empty = all
  bool want(const char* p) const { return palitra_bench::listed(phases, p); }
  bool want_conns(int n) const { return palitra_bench::listed(conns, std::to_string(n).c_str()); }
};

/// What the loop thread and the driving thread share during one phase. The
/// counters have one writer, the loop thread (bump), and are read by the
/// driver, which samples them (a count one behind is fine) and, in
/// await_quiet, learns from them that every task has ended.
struct phase_state {
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> done{0}; // round trips or accept cycles
  std::atomic<int> connected{0};      // clients connected so far
  std::atomic<int> clients{0};        // client tasks alive
  std::atomic<int> sessions{0};       // server sessions alive
  std::atomic<int> waiting{0};        // idle sessions that reached their read
  std::atomic<bool> failed{false};    // an echo came back wrong, or an op failed
};

template <class T> void bump(std::atomic<T>& a, T by = 1) noexcept {
  // relaxed load: the loop thread is the only writer. release store: what a
  // task did before its last bump (closing a listener the driver destroys
  // next) happens before await_quiet's acquire loads see the count.
  a.store(a.load(std::memory_order_relaxed) + by, std::memory_order_release);
}

/// Leaves a counter in phase_state when a coroutine ends, by any path.
struct live_count {
  std::atomic<int>& n;
  explicit live_count(std::atomic<int>& c) noexcept : n(c) { bump(n); }
  ~live_count() { bump(n, -1); }
  live_count(const live_count&) = delete;
  live_count& operator=(const live_count&) = delete;
};

std::array<std::byte, max_bytes> make_payload() {
  std::array<std::byte, max_bytes> p{};
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<std::byte>((i * 131 + 7) & 0xff);
  return p;
}
const std::array<std::byte, max_bytes> payload = make_payload();

void check_echo(const std::byte* got, std::size_t n, phase_state& st) {
  if (std::memcmp(got, payload.data(), n) != 0) st.failed.store(true, std::memory_order_relaxed);
}

/// Polls `pred` every millisecond up to phase_limit; exits the bench if it
/// never holds (a hang is a failed run, not a slow one).
template <class P> void await_or_die(P pred, const char* system, const char* what) {
  const auto until = clock_type::now() + phase_limit;
  while (!pred()) {
    if (clock_type::now() > until) {
      std::fprintf(stderr, "palitra_bench_echo: %s: %s did not happen within %llds\n", system,
                   what, static_cast<long long>(phase_limit.count()));
      std::_Exit(2);
    }
    std::this_thread::sleep_for(1ms);
  }
}

/// The timed window of a phase whose clients are running: waits until
/// `ready` clients are connected, lets them warm up, counts st.done over
/// c.seconds, then asks everything to stop. Returns per second.
double timed_window(phase_state& st, int ready, const config& c, const char* system) {
  await_or_die([&] { return st.connected.load(std::memory_order_relaxed) >= ready; }, system,
               "connecting every client");
  std::this_thread::sleep_for(std::chrono::duration<double>(c.warmup));
  const std::uint64_t n0 = st.done.load(std::memory_order_relaxed);
  const auto t0 = clock_type::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(c.seconds));
  const std::uint64_t n1 = st.done.load(std::memory_order_relaxed);
  const auto t1 = clock_type::now();
  st.stop.store(true, std::memory_order_relaxed);
  return static_cast<double>(n1 - n0) / std::chrono::duration<double>(t1 - t0).count();
}

/// After a phase: every client and server session has ended.
void await_quiet(phase_state& st, const char* system) {
  await_or_die([&] {
    return st.clients.load(std::memory_order_acquire) == 0 && // pairs with bump's release
           st.sessions.load(std::memory_order_acquire) == 0;
  }, system, "the end of every client and session");
  if (st.failed.load(std::memory_order_relaxed)) {
    std::fprintf(stderr, "palitra_bench_echo: %s: an echo came back wrong or an operation "
                         "failed\n", system);
    std::_Exit(2);
  }
}

/// One system in one round. NaN = not measured.
struct sample {
  std::array<double, conn_counts.size()> rt{nan_v, nan_v, nan_v}; // round trips/s
  double allocs_per_rt = nan_v;
  double accepts = nan_v;          // accept cycles/s
  double idle_bytes = nan_v;       // ΔRSS per idle connection
  double idle_allocs = nan_v;      // global allocation calls per idle connection
  std::uint64_t rt_total[conn_counts.size()]{}; // round trips over the whole phase (strace)
};

/// Result of the idle child (plain data through a pipe).
struct idle_result {
  double bytes = nan_v;
  double allocs = nan_v;
  bool ok = false;

  /// Ends the idle measurement: `w` and `rss0` were taken before the
  /// connections were opened, `n` of which are idle now.
  static idle_result measured(palitra_bench::alloc_window& w, long rss0, int n,
                              const phase_state& st) {
    const double allocs = static_cast<double>(w.stop());
    const long rss1 = palitra_bench::rss_bytes();
    return {static_cast<double>(rss1 - rss0) / n, allocs / n,
            !st.failed.load(std::memory_order_relaxed)};
  }
};

// ===========================================================================
// palitra
// ===========================================================================
namespace pal {

using palitra::task;
using palitra::net::tcp_listener;
using palitra::net::tcp_stream;

task<void> session(tcp_stream s, phase_state& st) {
  live_count live(st.sessions);
  std::array<std::byte, session_buf> buf;
  try {
    for (;;) {
      bump(st.waiting);
      const std::size_t n = co_await s.read_some(buf);
      if (n == 0) break; // the client closed
      co_await s.write_all(std::span<const std::byte>(buf.data(), n));
    }
  } catch (const palitra::error&) {
    st.failed.store(true, std::memory_order_relaxed);
  }
}

/// Accepts `n` connections, spawning a session for each.
task<void> acceptor(palitra::runner& r, tcp_listener& l, int n, phase_state& st) {
  for (int i = 0; i < n; ++i) r.spawn(session(co_await l.accept(), st));
}

task<void> client(std::uint16_t port, std::size_t bytes, phase_state& st) {
  live_count live(st.clients);
  try {
    tcp_stream s = co_await tcp_stream::connect("127.0.0.1", port);
    bump(st.connected);
    std::array<std::byte, max_bytes> in;
    const auto out = std::span<const std::byte>(payload.data(), bytes);
    while (!st.stop.load(std::memory_order_relaxed)) {
      co_await s.write_all(out);
      co_await s.read_exact(std::span<std::byte>(in.data(), bytes));
      check_echo(in.data(), bytes, st);
      bump(st.done, std::uint64_t{1});
    }
  } catch (const palitra::error&) {
    st.failed.store(true, std::memory_order_relaxed);
  }
}

/// One established connection: warm-up, then allocation calls over `trips`.
task<std::uint64_t> alloc_client(std::uint16_t port, std::size_t bytes, std::size_t trips) {
  tcp_stream s = co_await tcp_stream::connect("127.0.0.1", port);
  std::array<std::byte, max_bytes> in;
  const auto out = std::span<const std::byte>(payload.data(), bytes);
  for (std::size_t i = 0; i < trips / 10; ++i) {
    co_await s.write_all(out);
    co_await s.read_exact(std::span<std::byte>(in.data(), bytes));
  }
  palitra_bench::alloc_window w;
  for (std::size_t i = 0; i < trips; ++i) {
    co_await s.write_all(out);
    co_await s.read_exact(std::span<std::byte>(in.data(), bytes));
  }
  co_return w.stop();
}

/// Accept cycles: the server closes each connection at once.
task<void> accept_server(tcp_listener& l, phase_state& st) {
  live_count live(st.sessions);
  for (;;) {
    try {
      tcp_stream s = co_await l.accept();
    } catch (const palitra::error&) {
      if (!l.is_open()) co_return; // the last connector closed it
      st.failed.store(true, std::memory_order_relaxed);
      co_return;
    }
  }
}

task<void> connector(tcp_listener& l, std::uint16_t port, phase_state& st, int& live) {
  live_count alive(st.clients);
  try {
    bump(st.connected);
    std::array<std::byte, 1> b;
    while (!st.stop.load(std::memory_order_relaxed)) {
      tcp_stream s = co_await tcp_stream::connect("127.0.0.1", port);
      if (co_await s.read_some(b) != 0) st.failed.store(true, std::memory_order_relaxed);
      bump(st.done, std::uint64_t{1});
    }
  } catch (const palitra::error&) {
    st.failed.store(true, std::memory_order_relaxed);
  }
  if (--live == 0) l.close(); // ends accept_server's wait
}

sample measure(const config& c) {
  sample out;
  palitra::runner r;
  for (std::size_t k = 0; k < conn_counts.size(); ++k) {
    if (!c.want("rt")) break;
    if (!c.want_conns(conn_counts[k])) continue;
    phase_state st;
    auto l = tcp_listener::bind("127.0.0.1", 0, backlog);
    const int n = conn_counts[k];
    r.spawn(acceptor(r, l, n, st));
    for (int i = 0; i < n; ++i) r.spawn(client(l.port(), c.bytes, st));
    out.rt[k] = timed_window(st, n, c, "palitra");
    await_quiet(st, "palitra");
    out.rt_total[k] = st.done.load(std::memory_order_relaxed);
  }
  if (c.want("alloc")) {
    phase_state st;
    auto l = tcp_listener::bind("127.0.0.1", 0, backlog);
    r.spawn(acceptor(r, l, 1, st));
    const std::uint64_t n = r.run(alloc_client(l.port(), c.bytes, c.alloc_trips));
    await_quiet(st, "palitra");
    out.allocs_per_rt = static_cast<double>(n) / static_cast<double>(c.alloc_trips);
  }
  if (c.want("accept")) {
    phase_state st;
    auto l = tcp_listener::bind("127.0.0.1", 0, backlog);
    int live = c.accept_conns; // loop thread only
    r.spawn(accept_server(l, st));
    for (int i = 0; i < c.accept_conns; ++i) r.spawn(connector(l, l.port(), st, live));
    out.accepts = timed_window(st, c.accept_conns, c, "palitra");
    await_quiet(st, "palitra");
  }
  return out;
}

idle_result idle(const config& c) {
  phase_state st;
  palitra::runner r;
  auto l = tcp_listener::bind("127.0.0.1", 0, backlog);
  const std::uint16_t port = l.port();
  std::vector<tcp_stream> clients;
  clients.reserve(static_cast<std::size_t>(c.idle));
  r.run([]() -> task<void> { co_return; }); // the loop's first-use setup happens here
  const long rss0 = palitra_bench::rss_bytes();
  palitra_bench::alloc_window w;
  r.run([&]() -> task<void> {
    for (int i = 0; i < c.idle; ++i) {
      clients.push_back(co_await tcp_stream::connect("127.0.0.1", port));
      r.spawn(session(co_await l.accept(), st));
    }
  });
  await_or_die([&] { return st.waiting.load(std::memory_order_relaxed) >= c.idle; }, "palitra",
               "every idle session reaching its read");
  r.run([]() -> task<void> { co_return; }); // the last session has suspended
  return idle_result::measured(w, rss0, c.idle, st);
}

} // namespace pal

// ===========================================================================
// asio
// ===========================================================================
namespace as {

using asio::ip::tcp;
using asio::use_awaitable;

tcp::endpoint loopback(std::uint16_t port) { return {asio::ip::address_v4::loopback(), port}; }

/// One thread in io_context::run(), kept alive by a work guard; the
/// concurrency hint 1 says so (one thread runs it).
struct loop_thread {
  asio::io_context ctx{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard = asio::make_work_guard(ctx);
  std::thread thread{[this] { ctx.run(); }};
  ~loop_thread() {
    guard.reset();
    thread.join();
  }
};

/// An acceptor on 127.0.0.1, ephemeral port, the same backlog as palitra's.
tcp::acceptor listen(asio::io_context& ctx) {
  tcp::acceptor a(ctx);
  a.open(tcp::v4());
  a.set_option(tcp::acceptor::reuse_address(true));
  a.bind(loopback(0));
  a.listen(backlog);
  return a;
}

asio::awaitable<void> session(tcp::socket s, phase_state& st) {
  live_count live(st.sessions);
  std::array<std::byte, session_buf> buf;
  asio::error_code ec;
  for (;;) {
    bump(st.waiting);
    const std::size_t n =
        co_await s.async_read_some(asio::buffer(buf), asio::redirect_error(use_awaitable, ec));
    if (ec) break; // eof: the client closed
    co_await asio::async_write(s, asio::buffer(buf.data(), n),
                               asio::redirect_error(use_awaitable, ec));
    if (ec) break;
  }
  if (ec && ec != asio::error::eof) st.failed.store(true, std::memory_order_relaxed);
}

asio::awaitable<void> acceptor(tcp::acceptor& a, int n, phase_state& st) {
  for (int i = 0; i < n; ++i) {
    tcp::socket s = co_await a.async_accept(use_awaitable);
    s.set_option(tcp::no_delay(true));
    asio::co_spawn(a.get_executor(), session(std::move(s), st), asio::detached);
  }
}

asio::awaitable<void> client(std::uint16_t port, std::size_t bytes, phase_state& st) {
  live_count live(st.clients);
  try {
    tcp::socket s(co_await asio::this_coro::executor);
    co_await s.async_connect(loopback(port), use_awaitable);
    s.set_option(tcp::no_delay(true));
    bump(st.connected);
    std::array<std::byte, max_bytes> in;
    while (!st.stop.load(std::memory_order_relaxed)) {
      co_await asio::async_write(s, asio::buffer(payload.data(), bytes), use_awaitable);
      co_await asio::async_read(s, asio::buffer(in.data(), bytes), use_awaitable);
      check_echo(in.data(), bytes, st);
      bump(st.done, std::uint64_t{1});
    }
  } catch (const std::exception&) {
    st.failed.store(true, std::memory_order_relaxed);
  }
}

asio::awaitable<std::uint64_t> alloc_client(std::uint16_t port, std::size_t bytes,
                                            std::size_t trips) {
  tcp::socket s(co_await asio::this_coro::executor);
  co_await s.async_connect(loopback(port), use_awaitable);
  s.set_option(tcp::no_delay(true));
  std::array<std::byte, max_bytes> in;
  for (std::size_t i = 0; i < trips / 10; ++i) {
    co_await asio::async_write(s, asio::buffer(payload.data(), bytes), use_awaitable);
    co_await asio::async_read(s, asio::buffer(in.data(), bytes), use_awaitable);
  }
  palitra_bench::alloc_window w;
  for (std::size_t i = 0; i < trips; ++i) {
    co_await asio::async_write(s, asio::buffer(payload.data(), bytes), use_awaitable);
    co_await asio::async_read(s, asio::buffer(in.data(), bytes), use_awaitable);
  }
  co_return w.stop();
}

asio::awaitable<void> accept_server(tcp::acceptor& a, phase_state& st) {
  live_count live(st.sessions);
  asio::error_code ec;
  for (;;) {
    tcp::socket s = co_await a.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec) break; // operation_aborted: the last connector closed the acceptor
  }
  if (ec != asio::error::operation_aborted) st.failed.store(true, std::memory_order_relaxed);
}

asio::awaitable<void> connector(tcp::acceptor& a, std::uint16_t port, phase_state& st, int& live) {
  live_count alive(st.clients);
  bump(st.connected);
  std::array<std::byte, 1> b;
  asio::error_code ec;
  while (!st.stop.load(std::memory_order_relaxed)) {
    tcp::socket s(a.get_executor());
    co_await s.async_connect(loopback(port), asio::redirect_error(use_awaitable, ec));
    if (ec) break;
    s.set_option(tcp::no_delay(true), ec); // as palitra's connect does
    co_await s.async_read_some(asio::buffer(b), asio::redirect_error(use_awaitable, ec));
    if (ec != asio::error::eof) break;
    ec = {};
    bump(st.done, std::uint64_t{1});
  }
  if (ec) st.failed.store(true, std::memory_order_relaxed);
  if (--live == 0) a.close(); // ends accept_server's wait
}

sample measure(const config& c) {
  sample out;
  loop_thread lt;
  for (std::size_t k = 0; k < conn_counts.size(); ++k) {
    if (!c.want("rt")) break;
    if (!c.want_conns(conn_counts[k])) continue;
    phase_state st;
    tcp::acceptor a = listen(lt.ctx);
    const std::uint16_t port = a.local_endpoint().port();
    const int n = conn_counts[k];
    asio::co_spawn(lt.ctx, acceptor(a, n, st), asio::detached);
    for (int i = 0; i < n; ++i) asio::co_spawn(lt.ctx, client(port, c.bytes, st), asio::detached);
    out.rt[k] = timed_window(st, n, c, "asio");
    await_quiet(st, "asio");
    out.rt_total[k] = st.done.load(std::memory_order_relaxed);
    // The acceptor is destroyed here, off the io thread: nothing waits on it.
  }
  if (c.want("alloc")) {
    phase_state st;
    tcp::acceptor a = listen(lt.ctx);
    asio::co_spawn(lt.ctx, acceptor(a, 1, st), asio::detached);
    const std::uint64_t n =
        asio::co_spawn(lt.ctx, alloc_client(a.local_endpoint().port(), c.bytes, c.alloc_trips),
                       asio::use_future)
            .get();
    await_quiet(st, "asio");
    out.allocs_per_rt = static_cast<double>(n) / static_cast<double>(c.alloc_trips);
  }
  if (c.want("accept")) {
    phase_state st;
    tcp::acceptor a = listen(lt.ctx);
    const std::uint16_t port = a.local_endpoint().port();
    int live = c.accept_conns; // io thread only
    asio::co_spawn(lt.ctx, accept_server(a, st), asio::detached);
    for (int i = 0; i < c.accept_conns; ++i)
      asio::co_spawn(lt.ctx, connector(a, port, st, live), asio::detached);
    out.accepts = timed_window(st, c.accept_conns, c, "asio");
    await_quiet(st, "asio");
  }
  return out;
}

asio::awaitable<void> open_idle(tcp::acceptor& a, std::vector<tcp::socket>& clients, int n,
                                phase_state& st) {
  const std::uint16_t port = a.local_endpoint().port();
  for (int i = 0; i < n; ++i) {
    tcp::socket c(a.get_executor());
    co_await c.async_connect(loopback(port), use_awaitable);
    c.set_option(tcp::no_delay(true));
    clients.push_back(std::move(c));
    tcp::socket s = co_await a.async_accept(use_awaitable);
    s.set_option(tcp::no_delay(true));
    asio::co_spawn(a.get_executor(), session(std::move(s), st), asio::detached);
  }
}

asio::awaitable<void> nothing() { co_return; }

idle_result idle(const config& c) {
  phase_state st;
  loop_thread lt;
  tcp::acceptor a = listen(lt.ctx);
  std::vector<tcp::socket> clients;
  clients.reserve(static_cast<std::size_t>(c.idle));
  asio::co_spawn(lt.ctx, nothing(), asio::use_future).get(); // first-use setup
  const long rss0 = palitra_bench::rss_bytes();
  palitra_bench::alloc_window w;
  asio::co_spawn(lt.ctx, open_idle(a, clients, c.idle, st), asio::use_future).get();
  await_or_die([&] { return st.waiting.load(std::memory_order_relaxed) >= c.idle; }, "asio",
               "every idle session reaching its read");
  asio::co_spawn(lt.ctx, nothing(), asio::use_future).get(); // the last session has suspended
  // The child _exits: the idle sessions are never torn down.
  return idle_result::measured(w, rss0, c.idle, st);
}

} // namespace as

// ===========================================================================
// Harness and report
// ===========================================================================

struct system_desc {
  const char* key;   // CSV name, --systems
  const char* label; // table name
  sample (*measure)(const config&);
  idle_result (*idle)(const config&);
};

const std::array<system_desc, 2> systems{{
    {"palitra", "palitra (one runner)", &pal::measure, &pal::idle},
    {"asio", "asio 1.22 (one io_context thread)", &as::measure, &as::idle},
}};
constexpr std::size_t palitra_index = 0, asio_index = 1;

using table = std::vector<std::vector<sample>>; // [system][round]

/// One round of one system. The idle child is forked first, while this
/// process has no other thread.
sample run_system(const system_desc& s, const config& c) {
  idle_result idle{};
  bool ok = false;
  if (c.want("idle")) {
    idle = palitra_bench::in_child<idle_result>([&] { return s.idle(c); }, ok);
    if (!ok || !idle.ok) {
      std::fprintf(stderr, "palitra_bench_echo: %s: the idle-connection child failed\n", s.key);
      std::exit(2);
    }
  }
  sample out = s.measure(c);
  out.idle_bytes = idle.bytes;
  out.idle_allocs = idle.allocs;
  return out;
}

/// Every numeric field of a sample, in CSV column order (after round,system).
std::vector<double*> fields(sample& s) {
  std::vector<double*> f;
  for (double& v : s.rt) f.push_back(&v);
  for (double* p : {&s.allocs_per_rt, &s.accepts, &s.idle_bytes, &s.idle_allocs}) f.push_back(p);
  return f;
}

template <class F> double median_of(const table& t, std::size_t sys, F get) {
  std::vector<double> v;
  for (const sample& s : t[sys]) v.push_back(get(s));
  return palitra_bench::median(std::move(v));
}

/// palitra ÷ asio within each round, median over rounds.
template <class F> double ratio(const table& t, F get) {
  std::vector<double> v;
  const std::size_t n = std::min(t[palitra_index].size(), t[asio_index].size());
  for (std::size_t r = 0; r < n; ++r) v.push_back(get(t[palitra_index][r]) / get(t[asio_index][r]));
  return palitra_bench::median(std::move(v));
}

template <class F> std::string spread(const table& t, std::size_t sys, F get,
                                      std::string (*f)(double) = &palitra_bench::fmt_rate) {
  std::vector<double> v;
  for (const sample& s : t[sys]) v.push_back(get(s));
  const double lo = palitra_bench::min_of(v);
  if (std::isnan(lo)) return "—";
  return f(lo) + ".." + f(palitra_bench::max_of(v));
}

std::string fmt_bytes(double v) { return palitra_bench::fmt("%.0f", v); }

void print_header(const config& c) {
  std::printf("# palitra_bench_echo: TCP echo on one loop, palitra vs asio\n\n");
  palitra_bench::print_machine();
  std::printf("- build: g++ %s, asio %d.%d.%d (io_context(1), use_awaitable), palitra frame "
              "allocator: %s\n",
              __VERSION__, ASIO_VERSION / 100000, ASIO_VERSION / 100 % 1000, ASIO_VERSION % 100,
              palitra::detail::frame_allocator_name());
  std::printf("- parameters: rounds %d; %.2f s warm-up + %.2f s window per phase; %zu-byte "
              "messages; connections 1, 16, 256; allocations over %zu round trips; %d accept "
              "clients; %d idle connections\n",
              c.rounds, c.warmup, c.seconds, c.bytes, c.alloc_trips, c.accept_conns, c.idle);
  std::printf("- allocs: calls to the global malloc/operator new (alloc_count.hpp). palitra's "
              "coroutine frames come from its frame allocator on a privately loaded mimalloc, "
              "which is not the global allocator, so they are not in these counts\n\n");
  std::fflush(stdout);
}

void print_tables(const table& t, int rounds) {
  using palitra_bench::fmt;
  using palitra_bench::fmt_rate;
  std::printf("\n## Results: median of %d interleaved round(s)\n\n", rounds);
  std::printf("| system | round trips/s @1 conn | @16 | @256 | allocs/round trip | accepts/s | "
              "bytes/idle conn | allocs/idle conn |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (std::size_t i = 0; i < systems.size(); ++i) {
    if (t[i].empty()) continue;
    auto m = [&](auto get) { return median_of(t, i, get); };
    std::printf("| %s", systems[i].label);
    for (std::size_t k = 0; k < conn_counts.size(); ++k)
      std::printf(" | %s", fmt_rate(m([k](const sample& s) { return s.rt[k]; })).c_str());
    std::printf(" | %s | %s | %s | %s |\n",
                fmt("%.2f", m([](const sample& s) { return s.allocs_per_rt; })).c_str(),
                fmt_rate(m([](const sample& s) { return s.accepts; })).c_str(),
                fmt("%.0f", m([](const sample& s) { return s.idle_bytes; })).c_str(),
                fmt("%.2f", m([](const sample& s) { return s.idle_allocs; })).c_str());
  }
  if (!t[palitra_index].empty() && !t[asio_index].empty()) {
    std::printf("\n## palitra ÷ asio (within each round, median over rounds)\n\n");
    std::printf("Rates: > 1 means palitra does more. Bytes: < 1 means palitra uses less.\n\n");
    std::printf("| round trips/s @1 | @16 | @256 | accepts/s | bytes/idle conn |\n");
    std::printf("|---:|---:|---:|---:|---:|\n");
    for (std::size_t k = 0; k < conn_counts.size(); ++k)
      std::printf("| %s ", fmt("%.2f", ratio(t, [k](const sample& s) { return s.rt[k]; })).c_str());
    std::printf("| %s | %s |\n", fmt("%.2f", ratio(t, [](const sample& s) { return s.accepts; })).c_str(),
                fmt("%.2f", ratio(t, [](const sample& s) { return s.idle_bytes; })).c_str());
  }
  std::printf("\n## Spread over rounds (min..max)\n\n");
  std::printf("| system | round trips/s @1 | @16 | @256 | accepts/s | bytes/idle conn |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (std::size_t i = 0; i < systems.size(); ++i) {
    if (t[i].empty()) continue;
    std::printf("| %s", systems[i].label);
    for (std::size_t k = 0; k < conn_counts.size(); ++k)
      std::printf(" | %s", spread(t, i, [k](const sample& s) { return s.rt[k]; }).c_str());
    std::printf(" | %s | %s |\n", spread(t, i, [](const sample& s) { return s.accepts; }).c_str(),
                spread(t, i, [](const sample& s) { return s.idle_bytes; }, &fmt_bytes).c_str());
  }
  std::fflush(stdout);
}

bool write_csv(const std::string& path, const table& t) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  std::fprintf(f, "round,system");
  for (int n : conn_counts) std::fprintf(f, ",round_trips_per_s_%dconn", n);
  std::fprintf(f, ",allocs_per_round_trip,accepts_per_s,bytes_per_idle_conn,allocs_per_idle_conn\n");
  palitra_bench::write_csv_rows(f, t, [](std::size_t i) { return systems[i].key; }, &fields);
  return std::fclose(f) == 0;
}

[[noreturn]] void usage(int code) {
  std::fprintf(code == 0 ? stdout : stderr,
               "usage: palitra_bench_echo [--rounds N] [--seconds S] [--warmup S] [--bytes N]\n"
               "                          [--alloc-trips N] [--accept-conns N] [--idle N]\n"
               "                          [--systems LIST] [--phases LIST] [--conns LIST] [--quick]\n"
               "                          [--csv PATH]\n"
               "  --rounds N        interleaved rounds (default 5)\n"
               "  --seconds S       timed window per phase (default 1)\n"
               "  --warmup S        warm-up before each window (default 0.25)\n"
               "  --bytes N         message size, 1..4096 (default 64)\n"
               "  --alloc-trips N   round trips counted for allocations (default 10000)\n"
               "  --accept-conns N  concurrent connect/close clients (default 16)\n"
               "  --idle N          idle connections for the memory figure (default 2000)\n"
               "  --systems LIST    palitra,asio (default both)\n"
               "  --phases LIST     rt,alloc,accept,idle (default all)\n"
               "  --conns LIST      connection counts of the rt phase: 1,16,256 (default all)\n"
               "  --quick           smoke run: 2 rounds, 0.2 s windows, 2000 trips, 500 idle\n"
               "  --csv PATH        also write per-round and median rows as CSV\n");
  std::exit(code);
}

double parse_number(const char* opt, const char* v, double lo, double hi) {
  char* end = nullptr;
  const double x = std::strtod(v, &end);
  if (end == v || *end != '\0' || !(x >= lo && x <= hi)) {
    std::fprintf(stderr, "palitra_bench_echo: %s needs a number in [%g, %g], got '%s'\n", opt, lo,
                 hi, v);
    usage(1);
  }
  return x;
}

/// Two fds per idle connection plus slack; raise the soft limit to the hard one.
void raise_fd_limit(const config& c) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  const rlim_t need = static_cast<rlim_t>(2 * std::max(c.idle, 256) + 256);
  if (lim.rlim_cur < need) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    getrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur < need) {
    std::fprintf(stderr, "palitra_bench_echo: RLIMIT_NOFILE %llu is below the %llu fds needed; "
                         "lower --idle\n",
                 static_cast<unsigned long long>(lim.rlim_cur),
                 static_cast<unsigned long long>(need));
    std::exit(1);
  }
}

} // namespace

int main(int argc, char** argv) {
  config c;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] { return palitra_bench::option_value(argc, argv, i, "palitra_bench_echo", &usage); };
    if (a == "--rounds") c.rounds = static_cast<int>(parse_number("--rounds", value(), 1, 1000));
    else if (a == "--seconds") c.seconds = parse_number("--seconds", value(), 0.01, 600);
    else if (a == "--warmup") c.warmup = parse_number("--warmup", value(), 0, 600);
    else if (a == "--bytes") c.bytes = static_cast<std::size_t>(parse_number("--bytes", value(), 1, max_bytes));
    else if (a == "--alloc-trips")
      c.alloc_trips = static_cast<std::size_t>(parse_number("--alloc-trips", value(), 10, 1e9));
    else if (a == "--accept-conns")
      c.accept_conns = static_cast<int>(parse_number("--accept-conns", value(), 1, 4096));
    else if (a == "--idle") c.idle = static_cast<int>(parse_number("--idle", value(), 1, 100000));
    else if (a == "--systems") c.only = value();
    else if (a == "--phases") c.phases = value();
    else if (a == "--conns") c.conns = value();
    else if (a == "--csv") c.csv = value();
    else if (a == "--quick") {
      c.rounds = 2;
      c.seconds = 0.2;
      c.warmup = 0.05;
      c.alloc_trips = 2000;
      c.idle = 500;
    } else if (a == "--help" || a == "-h") usage(0);
    else {
      std::fprintf(stderr, "palitra_bench_echo: unknown option '%s'\n", a.c_str());
      usage(1);
    }
  }
  raise_fd_limit(c);

  const std::vector<std::size_t> selected =
      palitra_bench::select_systems(systems, c.only, "palitra_bench_echo");

  print_header(c);
  table t(systems.size());
  const auto t_start = clock_type::now();
  palitra_bench::for_rounds(c.rounds, selected, [&](int r, std::size_t i) {
    const auto t0 = clock_type::now();
    t[i].push_back(run_system(systems[i], c));
    const sample& s = t[i].back();
    std::fprintf(stderr,
                 "round %d/%d %-8s rt/s @1 %7s @16 %7s @256 %7s (round trips in the phases: "
                 "%llu, %llu, %llu)  allocs/rt %s  accepts/s %s  B/idle conn %s  (%.1f s)\n",
                 r + 1, c.rounds, systems[i].key, palitra_bench::fmt_rate(s.rt[0]).c_str(),
                 palitra_bench::fmt_rate(s.rt[1]).c_str(), palitra_bench::fmt_rate(s.rt[2]).c_str(),
                 static_cast<unsigned long long>(s.rt_total[0]),
                 static_cast<unsigned long long>(s.rt_total[1]),
                 static_cast<unsigned long long>(s.rt_total[2]),
                 palitra_bench::fmt("%.2f", s.allocs_per_rt).c_str(),
                 palitra_bench::fmt_rate(s.accepts).c_str(),
                 palitra_bench::fmt("%.0f", s.idle_bytes).c_str(),
                 std::chrono::duration<double>(clock_type::now() - t0).count());
  });
  print_tables(t, c.rounds);
  std::printf("\n(total %.1f s; load average at the end: %s)\n",
              std::chrono::duration<double>(clock_type::now() - t_start).count(),
              palitra_bench::load_average().c_str());
  if (!c.csv.empty()) {
    if (!write_csv(c.csv, t)) {
      std::fprintf(stderr, "palitra_bench_echo: cannot write %s\n", c.csv.c_str());
      return 1;
    }
    std::printf("CSV: %s\n", c.csv.c_str());
  }
  return 0;
}
