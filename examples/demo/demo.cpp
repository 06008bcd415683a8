// palitra demo (the README's first command): a synchronous HTTP server whose
// handler needs three upstream documents, three ways, under the same load.
//
// It starts the example upstream (upstream/upstream.hpp; 20 ms per answer)
// and, for each handler variant in turn, the sync server
// (sync_server/comments_server.hpp, in this process, 64 worker threads),
// then drives it from 32 client connections on 127.0.0.1 (cpp-httplib
// clients, keep-alive, one thread each) for a fixed time, and prints one
// table: requests/s, p50/p99 latency and the upstream connections opened,
// for
//   (a) blocking  three blocking libcurl calls one after another
//   (b) palitra   palitra::run(fetch_all(...)): the three at once through
//                 one http::client shared by every request
//   (c) fresh     a fresh runner and client per request
// Bounded: --seconds per variant (10) and --max-requests per variant.
// Progress goes to stderr; exits 1 if any request failed.
//
//   palitra_http_demo [--seconds S] [--connections N] [--delay-ms MS]
//                     [--threads N] [--timeout-ms MS] [--max-requests N]
//                     [--variants abc]   (a subset, e.g. b)
#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../sync_server/comments_server.hpp"
#include "../upstream/upstream.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

struct settings {
  double seconds = 10;
  int connections = 32;
  long delay_ms = 20;
  int threads = 64;
  long timeout_ms = 2000;
  std::uint64_t max_requests = 200000;
  std::string variants = "abc"; ///< which of (a) (b) (c) to run
};

struct measured {
  const char* name;
  std::uint64_t ok = 0, failed = 0;
  double seconds = 0;
  double p50_ms = 0, p99_ms = 0;
  std::uint64_t upstream_connections = 0;
};

double percentile(std::vector<std::uint32_t>& v, double p) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k] / 1000.0;
}

bool three_documents(const std::string& body) {
  std::size_t n = 0;
  for (std::size_t p = 0; (p = body.find("\"id\":", p)) != std::string::npos; ++p) ++n;
  return n == 3;
}

measured run_variant(const char* name, example::variant how, const example::upstream& up,
                     const settings& s) {
  measured m{name};
  example::comments_server server({how, up.url(), std::chrono::milliseconds(s.timeout_ms),
                                   s.threads, 0});
  std::thread serving([&] { server.serve(); });
  const std::uint64_t accepted_before = up.accepted();

  std::atomic<std::uint64_t> issued{0}, failed{0};
  std::atomic<bool> reported{false};
  std::atomic<int> connected{0};
  std::vector<std::vector<std::uint32_t>> latencies(static_cast<std::size_t>(s.connections));
  auto fail = [&](const httplib::Result& res) {
    failed.fetch_add(1, std::memory_order_relaxed); // a counter, read after join
    if (!reported.exchange(true, std::memory_order_relaxed)) // one report is enough
      std::fprintf(stderr, "  first failure: %s\n",
                   res ? (std::to_string(res->status) + " " + res->body).c_str()
                       : httplib::to_string(res.error()).c_str());
  };
  // The clock starts once every client has connected (one untimed request
  // each): httplib listens with a backlog of 5, and 32 connects at once
  // would time a SYN retransmission (1 s) instead of the handler.
  clock_type::time_point start, deadline;
  std::atomic<bool> go{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < s.connections; ++i) {
    clients.emplace_back([&, i] {
      httplib::Client cli("127.0.0.1", server.port());
      cli.set_keep_alive(true);
      cli.set_tcp_nodelay(true); // as the server (comments_server.hpp)
      cli.set_read_timeout(10, 0);
      if (const httplib::Result res = cli.Get("/api/comments"); !(res && res->status == 200)) fail(res);
      connected.fetch_add(1, std::memory_order_release); // pairs with the acquire below
      while (!go.load(std::memory_order_acquire)) // publishes start and deadline
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      auto& lat = latencies[static_cast<std::size_t>(i)];
      // relaxed: a count bound, nothing is published through it
      while (clock_type::now() < deadline &&
             issued.fetch_add(1, std::memory_order_relaxed) < s.max_requests) {
        const auto t0 = clock_type::now();
        const httplib::Result res = cli.Get("/api/comments");
        const auto us = std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - t0);
        if (res && res->status == 200 && three_documents(res->body))
          lat.push_back(static_cast<std::uint32_t>(us.count()));
        else
          fail(res);
      }
    });
    // httplib's backlog of 5: let this one connect before the next
    while (connected.load(std::memory_order_acquire) <= i)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  start = clock_type::now();
  deadline = start + std::chrono::duration_cast<clock_type::duration>(
                         std::chrono::duration<double>(s.seconds));
  go.store(true, std::memory_order_release);
  for (auto next = start + std::chrono::seconds(1); next < deadline; next += std::chrono::seconds(1)) {
    std::this_thread::sleep_until(next);
    std::fprintf(stderr, "  %s: %2.0f s, %llu requests\n", name,
                 std::chrono::duration<double>(clock_type::now() - start).count(),
                 static_cast<unsigned long long>(std::min(issued.load(), s.max_requests)));
  }
  for (auto& t : clients) t.join();
  m.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  server.stop();
  serving.join();

  std::vector<std::uint32_t> all;
  for (auto& v : latencies) all.insert(all.end(), v.begin(), v.end());
  m.ok = all.size();
  m.failed = failed.load();
  m.p50_ms = percentile(all, 0.50);
  m.p99_ms = percentile(all, 0.99);
  m.upstream_connections = up.accepted() - accepted_before;
  return m;
}

[[noreturn]] void usage() {
  std::fprintf(stderr, "usage: palitra_http_demo [--seconds S] [--connections N] [--delay-ms MS]\n"
                       "                         [--threads N] [--timeout-ms MS] [--max-requests N]\n"
                       "                         [--variants abc]\n");
  std::exit(2);
}

} // namespace

int main(int argc, char** argv) {
  palitra::runtime_guard guard;
  settings s;
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) usage();
    const std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "--seconds") s.seconds = std::atof(v);
    else if (a == "--connections") s.connections = std::atoi(v);
    else if (a == "--delay-ms") s.delay_ms = std::atol(v);
    else if (a == "--threads") s.threads = std::atoi(v);
    else if (a == "--timeout-ms") s.timeout_ms = std::atol(v);
    else if (a == "--max-requests") s.max_requests = std::strtoull(v, nullptr, 10);
    else if (a == "--variants") s.variants = v;
    else usage();
  }
  if (s.seconds <= 0 || s.seconds > 60 || s.connections < 1 || s.connections > 256 ||
      s.threads < s.connections || s.delay_ms < 0 || s.timeout_ms < 1 || s.max_requests < 1)
    usage(); // --threads below --connections would leave connections unserved

  curl_global_init(CURL_GLOBAL_DEFAULT); // before any thread
  example::upstream up(std::chrono::milliseconds(s.delay_ms));
  std::fprintf(stderr,
               "demo: upstream on %s (%ld ms per answer); sync server with %d threads; "
               "%d client connections, %.0f s per variant\n",
               up.url().c_str(), s.delay_ms, s.threads, s.connections, s.seconds);

  const struct {
    const char* name;
    example::variant how;
  } variants[] = {{"(a) blocking", example::variant::blocking},
                  {"(b) palitra", example::variant::palitra},
                  {"(c) fresh", example::variant::fresh}};
  std::vector<measured> ms;
  for (const auto& v : variants) {
    if (s.variants.find(v.name[1]) == std::string::npos) continue;
    std::fprintf(stderr, "demo: %s ...\n", v.name);
    ms.push_back(run_variant(v.name, v.how, up, s));
  }

  std::printf("GET /api/comments: 3 upstream documents, %ld ms each; %d client connections, "
              "%.0f s per variant\n\n",
              s.delay_ms, s.connections, s.seconds);
  std::printf("| handler | requests/s | p50 ms | p99 ms | upstream connections opened | failed |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (const auto& m : ms)
    std::printf("| %s | %.0f | %.1f | %.1f | %llu | %llu |\n", m.name,
                static_cast<double>(m.ok) / m.seconds, m.p50_ms, m.p99_ms,
                static_cast<unsigned long long>(m.upstream_connections),
                static_cast<unsigned long long>(m.failed));
  const auto rps = [](const measured& m) { return static_cast<double>(m.ok) / m.seconds; };
  if (ms.size() == 3)
    std::printf("\n(b) / (a) requests/s: %.2fx   (b) / (c): %.2fx   (b) upstream connections "
              "%llu for at most %d calls in flight\n",
              rps(ms[1]) / std::max(1.0, rps(ms[0])), rps(ms[1]) / std::max(1.0, rps(ms[2])),
              static_cast<unsigned long long>(ms[1].upstream_connections), 3 * s.connections);
  std::uint64_t failed = 0;
  for (const auto& m : ms) failed += m.failed;
  if (failed != 0) {
    std::fprintf(stderr, "demo: %llu request(s) failed\n", static_cast<unsigned long long>(failed));
    return 1;
  }
  return 0;
}
