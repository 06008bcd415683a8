// palitra bench — palitra::http against the bound for any libcurl-based
// client: the same transfers driven by a minimal hand-written epoll +
// curl_multi_socket_action loop, in one process and one run (issue #10).
//
//   upstream  a fast HTTP/1.1 keep-alive server on 127.0.0.1, written with
//             palitra::net on a runner (thread) of its own; it answers every
//             request with the same 64-byte JSON body, at once.
//   palitra   one runner, one http::client (max_connections = C); C tasks
//             each loop `co_await client.get(url)`.
//   bound     one thread: epoll (level-triggered) + one CURLM with the same
//             limits; C easy handles, each removed and re-added when done
//             (so its connection is reused from the multi's cache), the
//             socket callback doing epoll_ctl, the timer callback storing
//             the next timeout: what curl's own multi-event example does,
//             with nothing else around it.
// Metrics, per system and round:
//   requests/s @C   C concurrent keep-alive GETs (1, 16, 256): after
//                   --warmup s, requests completed over --seconds s.
//   allocs/request  global allocation calls (alloc_count.hpp) by every
//                   thread over --alloc-requests sequential GETs after a
//                   warm-up; most are libcurl's own (both systems use it).
// Rounds interleave the systems; ratios (palitra ÷ bound) are taken within
// a round and the median is shown.
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <curl/curl.h>

#include <palitra/http.hpp>
#include <palitra/palitra.hpp>

#include "alloc_count.hpp"
#include "bench_util.hpp"

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;
using palitra::task;

namespace {

struct options {
  int rounds = 3;
  double warmup = 0.25;
  double seconds = 1.0;
  int alloc_requests = 2000;
  std::vector<int> conns{1, 16, 256};
  std::string systems; // "palitra", "bound" or both (empty)
};

// ---- the upstream ---------------------------------------------------------------------

class upstream {
public:
  upstream() : l_(palitra::net::tcp_listener::bind("127.0.0.1", 0, 1024)) {
    port_ = l_.port();
    r_.spawn(accept_loop());
  }
  ~upstream() { r_.close(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/doc"; }

private:
  palitra::task<void> accept_loop() {
    for (;;) r_.spawn(serve(co_await l_.accept()));
  }
  static palitra::task<void> serve(palitra::net::tcp_stream s) {
    static const std::string body = R"({"id":1,"text":"a comment of a fixed size, 64 bytes long.."})";
    static const std::string reply = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                     "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    std::string in;
    char buf[4096];
    try {
      for (;;) {
        std::size_t end;
        while ((end = in.find("\r\n\r\n")) == std::string::npos) {
          const std::size_t n = co_await s.read_some(std::as_writable_bytes(std::span(buf)));
          if (n == 0) co_return;
          in.append(buf, n);
        }
        in.erase(0, end + 4); // GETs only: no body
        co_await s.write_all(std::as_bytes(std::span(reply)));
      }
    } catch (const palitra::io_error&) {
    }
  }

  palitra::runner r_;
  palitra::net::tcp_listener l_;
  std::uint16_t port_;
};

// ---- palitra ------------------------------------------------------------------------------

double run_palitra(const std::string& url, int conns, const options& o) {
  palitra::http::client_options co;
  co.max_connections = co.max_connections_per_host = static_cast<std::size_t>(conns);
  palitra::http::client c(co);
  palitra::runner r;
  const auto t_start = clk::now() + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(o.warmup));
  const auto t_end = t_start + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(o.seconds));
  long counted = 0; // loop thread only
  auto worker = [&]() -> task<void> {
    while (clk::now() < t_end) {
      const auto resp = co_await c.get(url);
      if (resp.status != 200) throw std::runtime_error("status " + std::to_string(resp.status));
      if (clk::now() >= t_start) ++counted;
    }
  };
  r.run([&]() -> task<void> {
    std::vector<task<void>> ws;
    for (int i = 0; i < conns; ++i) ws.push_back(worker());
    co_await palitra::when_all(std::move(ws));
  });
  return static_cast<double>(counted) / o.seconds;
}

double allocs_palitra(const std::string& url, const options& o) {
  palitra::http::client c;
  palitra::runner r;
  auto many = [&](int n) -> task<void> {
    for (int i = 0; i < n; ++i) (void)co_await c.get(url);
  };
  r.run(many(o.alloc_requests / 10));
  palitra_bench::g_allocs.store(0);
  palitra_bench::g_count_allocs.store(true);
  r.run(many(o.alloc_requests));
  palitra_bench::g_count_allocs.store(false);
  return static_cast<double>(palitra_bench::g_allocs.load()) / o.alloc_requests;
}

// ---- the bound: epoll + curl_multi_socket_action, nothing else -------------------------------

class bound_loop {
public:
  bound_loop(int conns) : ep_(epoll_create1(EPOLL_CLOEXEC)), multi_(curl_multi_init()) {
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &on_socket);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &on_timer);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(conns));
    curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, static_cast<long>(conns));
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, static_cast<long>(conns));
  }
  ~bound_loop() {
    for (CURL* e : easies_) {
      curl_multi_remove_handle(multi_, e);
      curl_easy_cleanup(e);
    }
    curl_multi_cleanup(multi_);
    ::close(ep_);
  }

  /// `n` handles looping on `url` until `until`; requests done after `from`.
  long run(const std::string& url, int n, clk::time_point from, clk::time_point until,
           long max_requests = -1) {
    for (int i = 0; i < n; ++i) {
      CURL* e = curl_easy_init();
      curl_easy_setopt(e, CURLOPT_URL, url.c_str());
      curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &on_body);
      curl_easy_setopt(e, CURLOPT_WRITEDATA, this);
      curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
      easies_.push_back(e);
      curl_multi_add_handle(multi_, e);
    }
    long counted = 0, total = 0;
    int active = n;
    epoll_event evs[256];
    while (active > 0) {
      int wait_ms = -1;
      if (armed_) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline_ - clk::now()).count();
        wait_ms = left < 0 ? 0 : static_cast<int>(left);
      }
      const int k = epoll_wait(ep_, evs, 256, wait_ms);
      int running = 0;
      for (int i = 0; i < k; ++i) {
        int mask = 0;
        if (evs[i].events & EPOLLIN) mask |= CURL_CSELECT_IN;
        if (evs[i].events & EPOLLOUT) mask |= CURL_CSELECT_OUT;
        if (evs[i].events & (EPOLLERR | EPOLLHUP)) mask |= CURL_CSELECT_ERR;
        curl_multi_socket_action(multi_, evs[i].data.fd, mask, &running);
      }
      if (armed_ && clk::now() >= deadline_) {
        armed_ = false; // curl re-arms through on_timer if it wants
        curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &running);
      }
      int left = 0;
      while (CURLMsg* m = curl_multi_info_read(multi_, &left)) {
        if (m->msg != CURLMSG_DONE) continue;
        CURL* e = m->easy_handle;
        if (m->data.result != CURLE_OK) {
          std::fprintf(stderr, "bound: %s\n", curl_easy_strerror(m->data.result));
          std::exit(1);
        }
        ++total;
        const auto now = clk::now();
        if (now >= from) ++counted;
        curl_multi_remove_handle(multi_, e);
        if (now < until && (max_requests < 0 || total + active - 1 < max_requests))
          curl_multi_add_handle(multi_, e); // again, on the cached connection
        else
          --active;
      }
    }
    return counted;
  }

private:
  static int on_socket(CURL*, curl_socket_t s, int what, void* self, void* known) {
    auto* b = static_cast<bound_loop*>(self);
    epoll_event ev{};
    ev.data.fd = s;
    if (what == CURL_POLL_REMOVE) {
      if (known != nullptr) epoll_ctl(b->ep_, EPOLL_CTL_DEL, s, &ev);
      curl_multi_assign(b->multi_, s, nullptr);
      return 0;
    }
    ev.events = ((what & CURL_POLL_IN) != 0 ? std::uint32_t(EPOLLIN) : 0u) |
                ((what & CURL_POLL_OUT) != 0 ? std::uint32_t(EPOLLOUT) : 0u);
    if (known == nullptr) {
      epoll_ctl(b->ep_, EPOLL_CTL_ADD, s, &ev);
      curl_multi_assign(b->multi_, s, b);
    } else {
      epoll_ctl(b->ep_, EPOLL_CTL_MOD, s, &ev);
    }
    return 0;
  }
  static int on_timer(CURLM*, long ms, void* self) {
    auto* b = static_cast<bound_loop*>(self);
    b->armed_ = ms >= 0;
    b->deadline_ = clk::now() + std::chrono::milliseconds(ms < 0 ? 0 : ms);
    return 0;
  }
  static std::size_t on_body(char*, std::size_t size, std::size_t n, void*) { return size * n; }

  int ep_;
  CURLM* multi_;
  bool armed_ = false;
  clk::time_point deadline_{};
  std::vector<CURL*> easies_;
};

double run_bound(const std::string& url, int conns, const options& o) {
  bound_loop b(conns);
  const auto t_start = clk::now() + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(o.warmup));
  const auto t_end = t_start + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(o.seconds));
  return static_cast<double>(b.run(url, conns, t_start, t_end)) / o.seconds;
}

double allocs_bound(const std::string& url, const options& o) {
  const auto far = clk::now() + 1h;
  bound_loop b(1);
  (void)b.run(url, 1, clk::now(), far, o.alloc_requests / 10); // warm: its connection is cached
  palitra_bench::g_allocs.store(0);
  palitra_bench::g_count_allocs.store(true);
  (void)b.run(url, 1, clk::now(), far, o.alloc_requests);
  palitra_bench::g_count_allocs.store(false);
  // Includes one easy handle's setup (curl_easy_init and its options)
  // spread over alloc_requests requests: a few hundredths per request.
  return static_cast<double>(palitra_bench::g_allocs.load()) / o.alloc_requests;
}

void usage(int rc) {
  std::fprintf(rc == 0 ? stdout : stderr,
               "usage: palitra_bench_http [--rounds N] [--seconds S] [--warmup S] [--quick]\n"
               "                          [--systems palitra|bound] [--conns C]\n"
               "  palitra::http vs a hand-written epoll + curl_multi_socket_action loop\n");
  std::exit(rc);
}

} // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rounds") o.rounds = std::atoi(palitra_bench::option_value(argc, argv, i, "palitra_bench_http", usage));
    else if (a == "--seconds") o.seconds = std::atof(palitra_bench::option_value(argc, argv, i, "palitra_bench_http", usage));
    else if (a == "--warmup") o.warmup = std::atof(palitra_bench::option_value(argc, argv, i, "palitra_bench_http", usage));
    else if (a == "--quick") { o.rounds = 1; o.seconds = 0.3; o.warmup = 0.1; o.alloc_requests = 500; }
    else if (a == "--systems") o.systems = palitra_bench::option_value(argc, argv, i, "palitra_bench_http", usage);
    else if (a == "--conns") o.conns = {std::atoi(palitra_bench::option_value(argc, argv, i, "palitra_bench_http", usage))};
    else if (a == "--help" || a == "-h") usage(0);
    else usage(1);
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  palitra_bench::print_machine();
  std::printf("libcurl %s; upstream: palitra::net on its own runner, 64-byte body\n\n",
              curl_version_info(CURLVERSION_NOW)->version);
  upstream up;
  const std::string url = up.url();

  std::printf("| connections | palitra::http req/s | epoll + curl multi req/s | palitra ÷ bound |\n");
  std::printf("|---:|---:|---:|---:|\n");
  for (const int c : o.conns) {
    std::vector<double> p, b, ratio;
    for (int round = 0; round < o.rounds; ++round) {
      const bool want_p = palitra_bench::listed(o.systems, "palitra");
      const bool want_b = palitra_bench::listed(o.systems, "bound");
      double pr = NAN, br = NAN;
      if (round % 2 == 0) {
        if (want_p) pr = run_palitra(url, c, o);
        if (want_b) br = run_bound(url, c, o);
      } else {
        if (want_b) br = run_bound(url, c, o);
        if (want_p) pr = run_palitra(url, c, o);
      }
      p.push_back(pr);
      b.push_back(br);
      ratio.push_back(pr / br);
      std::fprintf(stderr, "  round %d @%d: palitra %.0f/s, bound %.0f/s\n", round + 1, c, pr, br);
    }
    std::printf("| %d | %s | %s | %.2f |\n", c, palitra_bench::fmt_rate(palitra_bench::median(p)).c_str(),
                palitra_bench::fmt_rate(palitra_bench::median(b)).c_str(), palitra_bench::median(ratio));
    std::fflush(stdout);
  }
  if (!o.systems.empty()) return 0; // a profiling run: no allocation pass
  const double ap = allocs_palitra(url, o), ab = allocs_bound(url, o);
  std::printf("\nglobal allocations per request (sequential keep-alive GETs): palitra::http %.1f, "
              "epoll + curl multi %.1f\n", ap, ab);
  std::printf("(palitra's coroutine frames come from its own mimalloc, not counted; the rest is "
              "mostly libcurl's)\n");
  return 0;
}
