// palitra bench — many calls in flight on one loop (issue #4).
//
// One caller thread submits N calls (default 100,000) to one loop; each is a
// coroutine that sleeps and then returns an int. Measured, per system:
//   memory     RSS (/proc/self/statm) once every call is in flight minus RSS
//              just before the first submission, ÷ N: bytes per in-flight
//              call, everything included (coroutine frame, palitra's root
//              object or asio's spawn state, timer-heap slot, the loop's
//              bookkeeping). The caller's vector of futures is allocated and
//              touched before the baseline, so it is not counted. palitra's
//              frames come from a privately dlopen()ed mimalloc whose own
//              statistics are not reachable from here, and a counting wrapper
//              cannot sit across that boundary either, so RSS is the honest
//              figure; sizeof of the root object and of the future are printed
//              beside it.
//   allocs     calls to the global allocator (malloc & co., operator new) by
//              every thread from the first submission until all N are in
//              flight, ÷ N (alloc_count.hpp; mimalloc frames are not counted).
//   complete   N calls sleeping --sleep-ms (default 200): time from the
//              return of the last submit until every future.get() returned;
//              every value is checked. Also: that time minus the sleep.
//   close      N calls sleeping 60 s, all in flight; the time of
//              runner::close() (palitra) or io_context::stop() + join +
//              ~io_context (asio). Afterwards every palitra future.get() must
//              throw runner_closed_error (DESIGN.md §2: "a call cancelled by
//              close()") and the counters must balance. Once with futures,
//              once with spawned (fire-and-forget) tasks.
// Every (system, phase) runs in its own forked child process, started from
// the single-threaded parent, so each RSS delta starts from a fresh heap: no
// phase reuses memory another one freed.
//
// asio has no close() that cancels what is in flight: io_context::stop() +
// ~io_context destroys suspended frames unresumed (a first version of this
// file did that; its child died with SIGSEGV at 10,000 co_spawn'd timers,
// not investigated further). Its row does the orderly
// equivalent by hand: the benchmark keeps a registry of the timers, and
// "close" cancels all of them on the io thread, lets every coroutine resume
// with operation_aborted and unwind, then joins the thread and destroys the
// io_context. That registry (8 B per call, reserved before the baseline) is
// a cost palitra carries inside its own root object.
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <asio.hpp>

#include <palitra/detail/frame_allocator.hpp>
#include <palitra/palitra.hpp>

#include "alloc_count.hpp"
#include "bench_util.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

struct config {
  std::size_t n = 100000;
  std::chrono::milliseconds sleep{200};
  bool asio = true;
  std::string csv;
};

/// What one child reports back to the parent (plain data through a pipe).
struct result {
  bool ran = false;               // the child wrote a result
  bool ok = false;                // every check of the phase passed
  char note[200] = {};            // first failed check, if any
  double bytes_per_call = -1;     // ΔRSS / N
  double allocs_per_call = -1;    // global allocator calls / N
  double submit_ms = -1;          // first submit .. last submit returned
  double complete_ms = -1;        // last submit returned .. all results back
  double close_ms = -1;           // close() (or the asio equivalent)
  std::uint64_t peak = 0;         // calls seen in flight at once
};

double ms_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

using palitra_bench::rss_bytes;

/// Polls `pred` every millisecond for up to `limit`.
template <class P> bool wait_for(P pred, std::chrono::seconds limit = 120s) {
  const auto until = clock_type::now() + limit;
  while (!pred()) {
    if (clock_type::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

void fail(result& r, const std::string& what) {
  if (r.ok || r.note[0] == '\0') std::snprintf(r.note, sizeof r.note, "%s", what.c_str());
  r.ok = false;
}

// Coroutines entered, on any system: "suspended in its sleep" for all N.
std::atomic<std::size_t> g_started{0};

// ---- palitra -------------------------------------------------------------------------------

palitra::task<int> nap(int i, std::chrono::milliseconds d) {
  g_started.fetch_add(1, std::memory_order_relaxed);
  co_await palitra::sleep_for(d);
  co_return i;
}

palitra::task<void> nap_void(std::chrono::milliseconds d) {
  g_started.fetch_add(1, std::memory_order_relaxed);
  co_await palitra::sleep_for(d);
}

/// Waits until the loop accepted `accepted` calls in all and the n new
/// coroutines reached their sleep; records the in-flight count seen then.
void wait_all_in_flight(palitra::runner& r, std::uint64_t accepted, std::size_t n,
                        result& out) {
  if (!wait_for([&] { return r.stats().submitted >= accepted && g_started.load() >= n; }))
    fail(out, "timed out waiting for the loop to accept every call");
  out.peak = r.stats().in_flight;
  if (out.peak != n)
    fail(out, "only " + std::to_string(out.peak) + " of " + std::to_string(n) +
                  " were in flight at once (raise --sleep-ms)");
}

result palitra_complete(const config& c) {
  result out;
  out.ok = true;
  palitra::runner r;
  (void)r.run(nap(0, 0ms)); // loop thread, reactor, allocator warmed up
  g_started = 0;
  const auto base = r.stats().submitted;
  std::vector<palitra::future<int>> fs(c.n); // touched: not part of the delta
  const long rss0 = rss_bytes();
  palitra_bench::alloc_window w;
  const auto t0 = clock_type::now();
  for (std::size_t i = 0; i < c.n; ++i) fs[i] = r.submit(nap(static_cast<int>(i), c.sleep));
  const auto t_last = clock_type::now();
  if (!wait_for([&] { return r.stats().submitted - base >= c.n && g_started.load() >= c.n; }))
    fail(out, "timed out waiting for the loop to accept every call");
  const std::uint64_t allocs = w.stop();
  const long rss1 = rss_bytes();
  out.peak = r.stats().in_flight;
  if (out.peak != c.n)
    fail(out, "only " + std::to_string(out.peak) + " in flight at once (raise --sleep-ms)");
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < c.n; ++i)
    if (fs[i].get() != static_cast<int>(i)) ++wrong;
  const auto t_done = clock_type::now();
  if (wrong != 0) fail(out, std::to_string(wrong) + " wrong results");
  const auto s = r.stats();
  if (s.completed != s.submitted || s.in_flight != 0) fail(out, "counters do not balance");
  out.bytes_per_call = double(rss1 - rss0) / double(c.n);
  out.allocs_per_call = double(allocs) / double(c.n);
  out.submit_ms = ms_between(t0, t_last);
  out.complete_ms = ms_between(t_last, t_done);
  return out;
}

result palitra_close_futures(const config& c) {
  result out;
  out.ok = true;
  palitra::runner r;
  (void)r.run(nap(0, 0ms));
  g_started = 0;
  std::vector<palitra::future<int>> fs(c.n);
  const long rss0 = rss_bytes();
  const auto t0 = clock_type::now();
  for (std::size_t i = 0; i < c.n; ++i) fs[i] = r.submit(nap(static_cast<int>(i), 60s));
  out.submit_ms = ms_between(t0, clock_type::now());
  wait_all_in_flight(r, c.n + 1, c.n, out); // + the warm-up call
  out.bytes_per_call = double(rss_bytes() - rss0) / double(c.n);
  const auto t_close = clock_type::now();
  r.close();
  out.close_ms = ms_between(t_close, clock_type::now());
  std::size_t closed = 0, other = 0;
  for (auto& f : fs) {
    try {
      (void)f.get();
      ++other;
    } catch (const palitra::runner_closed_error&) {
      ++closed;
    } catch (...) {
      ++other;
    }
  }
  if (closed != c.n)
    fail(out, std::to_string(other) + " futures did not throw runner_closed_error");
  const auto s = r.stats();
  if (s.in_flight != 0 || s.cancelled != c.n || s.submitted != s.completed + s.failed + s.cancelled)
    fail(out, "counters do not balance after close()");
  return out;
}

result palitra_close_spawned(const config& c) {
  result out;
  out.ok = true;
  std::atomic<long> reported{0};
  palitra::runner_options o;
  o.on_unhandled_error = [&](std::exception_ptr) { reported.fetch_add(1); };
  palitra::runner r(o);
  (void)r.run(nap(0, 0ms));
  g_started = 0;
  const long rss0 = rss_bytes();
  const auto t0 = clock_type::now();
  for (std::size_t i = 0; i < c.n; ++i) r.spawn(nap_void(60s));
  out.submit_ms = ms_between(t0, clock_type::now());
  wait_all_in_flight(r, c.n + 1, c.n, out);
  out.bytes_per_call = double(rss_bytes() - rss0) / double(c.n);
  const auto t_close = clock_type::now();
  r.close();
  out.close_ms = ms_between(t_close, clock_type::now());
  const auto s = r.stats();
  if (s.in_flight != 0 || s.cancelled != c.n || s.submitted != s.completed + s.failed + s.cancelled)
    fail(out, "counters do not balance after close()");
  if (reported.load() != 0) fail(out, "close() reported cancelled spawned tasks as unhandled");
  return out;
}

// ---- asio ----------------------------------------------------------------------------------

asio::awaitable<int> asio_nap(int i, std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  g_started.fetch_add(1, std::memory_order_relaxed);
  co_await t.async_wait(asio::use_awaitable);
  co_return i;
}

/// As asio_nap, but the timer is entered in `timers` (on the io thread), so an
/// orderly close can cancel it.
asio::awaitable<int> asio_nap_reg(int i, std::chrono::milliseconds d,
                                  std::vector<asio::steady_timer*>* timers) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  timers->push_back(&t);
  g_started.fetch_add(1, std::memory_order_relaxed);
  co_await t.async_wait(asio::use_awaitable);
  co_return i;
}

/// One thread in io_context::run(), kept alive by a work guard.
struct asio_loop {
  std::unique_ptr<asio::io_context> ctx = std::make_unique<asio::io_context>(1);
  asio::executor_work_guard<asio::io_context::executor_type> guard =
      asio::make_work_guard(*ctx);
  std::thread thread{[this] { ctx->run(); }};
  ~asio_loop() {
    guard.reset();
    if (ctx) ctx->stop();
    if (thread.joinable()) thread.join();
  }
};

void warm(asio_loop& l) {
  (void)asio::co_spawn(*l.ctx, asio_nap(0, 0ms), asio::use_future).get();
  g_started = 0;
}

result asio_complete(const config& c) {
  result out;
  out.ok = true;
  asio_loop l;
  warm(l);
  std::vector<std::future<int>> fs(c.n);
  const long rss0 = rss_bytes();
  palitra_bench::alloc_window w;
  const auto t0 = clock_type::now();
  for (std::size_t i = 0; i < c.n; ++i)
    fs[i] = asio::co_spawn(*l.ctx, asio_nap(static_cast<int>(i), c.sleep), asio::use_future);
  const auto t_last = clock_type::now();
  if (!wait_for([&] { return g_started.load() >= c.n; }))
    fail(out, "timed out waiting for every coroutine to start");
  const std::uint64_t allocs = w.stop();
  const long rss1 = rss_bytes();
  std::size_t ready = 0;
  for (auto& f : fs)
    if (f.wait_for(0s) == std::future_status::ready) ++ready;
  out.peak = c.n - ready;
  if (ready != 0) fail(out, std::to_string(ready) + " ended before all were in flight");
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < c.n; ++i)
    if (fs[i].get() != static_cast<int>(i)) ++wrong;
  const auto t_done = clock_type::now();
  if (wrong != 0) fail(out, std::to_string(wrong) + " wrong results");
  out.bytes_per_call = double(rss1 - rss0) / double(c.n);
  out.allocs_per_call = double(allocs) / double(c.n);
  out.submit_ms = ms_between(t0, t_last);
  out.complete_ms = ms_between(t_last, t_done);
  return out;
}

/// The asio counterpart of close(): on the io thread, cancel every timer
/// (each coroutine resumes with operation_aborted and unwinds, as palitra's
/// resume with cancelled_error), drop the work guard, join the thread once
/// run() ran out of work, destroy the io_context.
result asio_close(const config& c, bool with_futures) {
  result out;
  out.ok = true;
  std::vector<asio::steady_timer*> timers;
  timers.resize(c.n); // touched before the baseline: the registry is not counted
  timers.clear();
  auto l = std::make_unique<asio_loop>();
  warm(*l);
  std::vector<std::future<int>> fs(with_futures ? c.n : 0);
  const long rss0 = rss_bytes();
  const auto t0 = clock_type::now();
  for (std::size_t i = 0; i < c.n; ++i) {
    auto a = asio_nap_reg(static_cast<int>(i), 60s, &timers);
    if (with_futures)
      fs[i] = asio::co_spawn(*l->ctx, std::move(a), asio::use_future);
    else
      asio::co_spawn(*l->ctx, std::move(a), asio::detached);
  }
  out.submit_ms = ms_between(t0, clock_type::now());
  if (!wait_for([&] { return g_started.load() >= c.n; }))
    fail(out, "timed out waiting for every coroutine to start");
  out.peak = g_started.load();
  out.bytes_per_call = double(rss_bytes() - rss0) / double(c.n);
  const auto t_close = clock_type::now();
  asio::post(*l->ctx, [&timers] {
    for (auto* t : timers) t->cancel();
    timers.clear();
  });
  l->guard.reset();
  l->thread.join();
  l->ctx.reset();
  out.close_ms = ms_between(t_close, clock_type::now());
  std::size_t aborted = 0;
  for (auto& f : fs) {
    try {
      (void)f.get();
    } catch (const std::system_error& e) {
      if (e.code() == asio::error::operation_aborted) ++aborted;
    } catch (...) {
    }
  }
  if (with_futures && aborted != c.n)
    fail(out, std::to_string(c.n - aborted) + " futures did not see operation_aborted");
  return out;
}

// ---- harness -------------------------------------------------------------------------------

/// Runs `fn` in a forked child (from this single-threaded parent) and returns
/// what it reported; a crashed child gives ran == false.
template <class F> result in_child(const char* what, F fn) {
  std::fprintf(stderr, "palitra_inflight: %s...\n", what);
  bool ok = false;
  result r = palitra_bench::in_child<result>(
      [&] {
        result x = fn();
        x.ran = true;
        return x;
      },
      ok);
  if (!ok) std::snprintf(r.note, sizeof r.note, "child died before it reported");
  return r;
}

using palitra_bench::load_average;

std::string cell(double v, const char* f) {
  if (v < 0) return "—";
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

struct row {
  const char* system;
  result complete, close_futures, close_spawned;
};

void print_row(const row& r, std::size_t n) {
  std::printf("| %s | %zu | %s | %s | %s | %s | %s | %s | %s |\n", r.system, n,
              cell(r.complete.bytes_per_call, "%.0f").c_str(),
              cell(r.close_spawned.bytes_per_call, "%.0f").c_str(),
              cell(r.complete.allocs_per_call, "%.2f").c_str(),
              cell(r.complete.submit_ms, "%.1f").c_str(),
              cell(r.complete.complete_ms, "%.1f").c_str(),
              cell(r.close_futures.close_ms, "%.1f").c_str(),
              cell(r.close_spawned.close_ms, "%.1f").c_str());
}

void print_checks(const row& r) {
  const std::pair<const char*, const result*> phases[] = {
      {"complete", &r.complete}, {"close, futures", &r.close_futures},
      {"close, spawned", &r.close_spawned}};
  for (const auto& [name, res] : phases)
    std::printf("- %s, %s: %s; peak in flight %" PRIu64 "%s%s\n", r.system, name,
                !res->ran ? "NOT RUN" : res->ok ? "checks passed" : "CHECK FAILED", res->peak,
                res->note[0] != '\0' ? "; " : "", res->note);
}

bool write_csv(const std::string& path, const std::vector<row>& rows, const config& c) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  std::fprintf(f, "system,n,sleep_ms,bytes_per_call_future,bytes_per_call_spawned,"
                  "allocs_per_call,submit_ms,complete_ms,close_futures_ms,close_spawned_ms,ok\n");
  for (const auto& r : rows) {
    auto v = [](double x) { return x < 0 ? std::string() : std::to_string(x); };
    std::fprintf(f, "%s,%zu,%lld,%s,%s,%s,%s,%s,%s,%s,%d\n", r.system, c.n,
                 static_cast<long long>(c.sleep.count()), v(r.complete.bytes_per_call).c_str(),
                 v(r.close_spawned.bytes_per_call).c_str(), v(r.complete.allocs_per_call).c_str(),
                 v(r.complete.submit_ms).c_str(), v(r.complete.complete_ms).c_str(),
                 v(r.close_futures.close_ms).c_str(), v(r.close_spawned.close_ms).c_str(),
                 r.complete.ok && r.close_futures.ok && r.close_spawned.ok ? 1 : 0);
  }
  return std::fclose(f) == 0;
}

void usage() {
  std::fprintf(stderr,
               "usage: palitra_inflight [--n N] [--sleep-ms MS] [--no-asio] [--csv PATH]\n"
               "  --n N          calls in flight at once (default 100000)\n"
               "  --sleep-ms MS  sleep of each call in the completion phase (default 200)\n"
               "  --no-asio      palitra rows only\n"
               "  --csv PATH     also write one CSV row per system\n");
}

} // namespace

int main(int argc, char** argv) {
  config c;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--n") c.n = std::strtoull(value().c_str(), nullptr, 10);
    else if (a == "--sleep-ms") c.sleep = std::chrono::milliseconds(std::atol(value().c_str()));
    else if (a == "--no-asio") c.asio = false;
    else if (a == "--csv") c.csv = value();
    else {
      usage();
      return 2;
    }
  }
  if (c.n == 0 || c.n > 100000000) {
    usage();
    return 2;
  }

  char date[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  std::printf("# palitra_inflight: %zu calls in flight on one loop\n\n", c.n);
  std::printf("- date: %s; load average at start: %s\n", date, load_average().c_str());
  std::printf("- build: g++ %s, asio %d.%d.%d, palitra frame allocator: %s\n", __VERSION__,
              ASIO_VERSION / 100000, ASIO_VERSION / 100 % 1000, ASIO_VERSION % 100,
              palitra::detail::frame_allocator_name());
  std::printf("- sizeof: palitra root object (heap_call<int>) %zu B, palitra::future<int> %zu "
              "B, std::future<int> %zu B; the coroutine frame's size is not observable from "
              "here (see the file comment), so the bytes columns are ΔRSS / N\n",
              sizeof(palitra::detail::heap_call<int>), sizeof(palitra::future<int>),
              sizeof(std::future<int>));
  std::printf("- each call: sleep %lld ms then return its int (complete); sleep 60 s "
              "(close); one submitting thread; every phase in its own fresh process\n\n",
              static_cast<long long>(c.sleep.count()));
  std::fflush(stdout);

  std::vector<row> rows;
  rows.push_back({"palitra", in_child("palitra: complete", [&] { return palitra_complete(c); }),
                  in_child("palitra: close, futures", [&] { return palitra_close_futures(c); }),
                  in_child("palitra: close, spawned", [&] { return palitra_close_spawned(c); })});
  if (c.asio)
    rows.push_back({"asio", in_child("asio: complete", [&] { return asio_complete(c); }),
                    in_child("asio: close, futures", [&] { return asio_close(c, true); }),
                    in_child("asio: close, spawned", [&] { return asio_close(c, false); })});

  std::printf("| system | N | bytes/in-flight call (future) | bytes/in-flight call (spawn) | "
              "global allocs/call | submit N ms | complete N ms after last submit | close() "
              "ms, N futures | close() ms, N spawned |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& r : rows) print_row(r, c.n);
  std::printf("\nasio's close columns: cancel every timer on the io thread (a registry kept by "
              "the benchmark), let each coroutine unwind with operation_aborted, join, "
              "~io_context; asio has no close() of its own that does this.\n\n");
  bool ok = true;
  for (const auto& r : rows) {
    print_checks(r);
    ok = ok && r.complete.ok && r.close_futures.ok && r.close_spawned.ok;
  }
  std::printf("- load average at end: %s\n", load_average().c_str());
  if (!c.csv.empty()) {
    if (!write_csv(c.csv, rows, c)) {
      std::fprintf(stderr, "palitra_inflight: cannot write %s\n", c.csv.c_str());
      return 1;
    }
    std::printf("CSV: %s\n", c.csv.c_str());
  }
  return ok ? 0 : 1;
}
