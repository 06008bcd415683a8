// palitra examples — a multi-threaded synchronous HTTP server (cpp-httplib,
// a thread per connection from its pool) whose handler GET /api/comments
// needs three documents from an upstream. Shared by sync_server.cpp (the
// program) and demo.cpp (which runs it three ways under load).
//
// The handler gets them one of three ways (variant):
//   blocking  one after another, each a blocking libcurl call on the
//             thread's own reused easy handle (common/blocking_get.hpp);
//   palitra   palitra::run(fetch_all(...), timeout): all three at once on
//             the global runner's loop, through ONE palitra::http::client
//             kept by the server for every request on every thread;
//   fresh     a new runner and a new client per request (Python's
//             asyncio.run per call): concurrent, but every request pays a
//             loop thread's start and a new connection per document.
// Any upstream failure (refused, reset, malformed, a status >= 400) or the
// per-request timeout answers 502 with a short JSON error; the server goes on.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

#include <palitra/http.hpp>
#include <palitra/palitra.hpp>

#include "../common/blocking_get.hpp"

namespace example {

enum class variant { blocking, palitra, fresh };

/// The three documents, fetched concurrently through `c`, as one JSON array.
/// Thread: the loop (through palitra::run). Throws: io_error, status_error.
inline palitra::task<std::string> fetch_all(palitra::http::client& c, std::string base) {
  auto [r1, r2, r3] = co_await palitra::when_all(c.get(base + "/comments/1"),
                                                 c.get(base + "/comments/2"),
                                                 c.get(base + "/comments/3"));
  for (const auto* r : {&r1, &r2, &r3}) r->raise_for_status();
  co_return "[" + r1.body + "," + r2.body + "," + r3.body + "]";
}

struct server_options {
  variant how = variant::palitra;
  std::string upstream;                       ///< base URL: fetches upstream + /comments/1..3
  std::chrono::milliseconds timeout{1000};    ///< per request, all three documents
  int threads = 64;                           ///< httplib workers: one per open client connection
  std::uint16_t port = 0;                     ///< on 127.0.0.1; 0: ephemeral
};

class comments_server {
public:
  /// Binds 127.0.0.1:port (listening from here on). Throws std::runtime_error.
  explicit comments_server(server_options o)
      : o_(std::move(o)), client_(client_options(o_)) {
    svr_.new_task_queue = [n = o_.threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
    // httplib closes a keep-alive connection after 5 requests by default;
    // a load generator would measure reconnects instead of the handler.
    svr_.set_keep_alive_max_count(100000);
    // httplib writes a response's head and body apart; with Nagle on, the
    // body waits for the client's delayed ACK of the head (~40 ms on Linux).
    svr_.set_tcp_nodelay(true);
    svr_.Get("/api/comments", [this](const httplib::Request&, httplib::Response& res) {
      try {
        res.set_content(comments(), "application/json");
      } catch (const std::exception& e) {
        res.status = 502;
        res.set_content(error_json(e), "application/json");
      }
    });
    port_ = o_.port == 0 ? svr_.bind_to_any_port("127.0.0.1")
                         : (svr_.bind_to_port("127.0.0.1", o_.port) ? o_.port : -1);
    if (port_ < 0) throw std::runtime_error("cannot bind 127.0.0.1:" + std::to_string(o_.port));
  }
  comments_server(const comments_server&) = delete;
  comments_server& operator=(const comments_server&) = delete;

  std::uint16_t port() const noexcept { return static_cast<std::uint16_t>(port_); }

  /// Serve until stop(); returns once every worker finished its request.
  void serve() {
    svr_.listen_after_bind();
    served_.store(true, std::memory_order_release); // pairs with stop()'s acquire
  }
  /// Stop accepting, let requests in progress finish. Thread: any.
  void stop() {
    // httplib's stop() does nothing before listen_after_bind has started.
    while (!svr_.is_running() && !served_.load(std::memory_order_acquire))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    svr_.stop();
  }

  /// New upstream connections this server's handlers opened so far.
  std::uint64_t upstream_connections_opened() const {
    switch (o_.how) {
    case variant::palitra: return client_.stats().connections_opened;
    case variant::fresh: return fresh_connections_.load(std::memory_order_relaxed);
    case variant::blocking: break;
    }
    return blocking_connections_opened.load(std::memory_order_relaxed); // all blocking_gets in the process
  }

private:
  static palitra::http::client_options client_options(const server_options& o) {
    palitra::http::client_options c;
    // Each worker has at most three transfers in flight: never queue one
    // behind the pool's limit (curl's default per-host cap would).
    c.max_connections = c.max_connections_per_host = 3 * static_cast<std::size_t>(o.threads);
    c.timeout = c.connect_timeout = o.timeout;
    return c;
  }

  std::string comments() {
    const std::string& base = o_.upstream;
    switch (o_.how) {
    case variant::palitra:
      return palitra::run(fetch_all(client_, base), o_.timeout);
    case variant::fresh: {
      palitra::runner r;                                 // a loop thread per request
      palitra::http::client c(client_options(o_));       // and a connection per document
      struct count {
        std::atomic<std::uint64_t>& to;
        palitra::http::client& c;
        ~count() { to.fetch_add(c.stats().connections_opened, std::memory_order_relaxed); }
      } counted{fresh_connections_, c};
      return r.run(fetch_all(c, base), o_.timeout);
    }
    case variant::blocking: {
      const auto deadline = std::chrono::steady_clock::now() + o_.timeout;
      std::string out = "[";
      for (int id = 1; id <= 3; ++id) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) throw blocking_timeout("upstream: timed out");
        out += blocking_get::this_thread().get(base + "/comments/" + std::to_string(id), left);
        out += id < 3 ? "," : "]";
      }
      return out;
    }
    }
    throw std::logic_error("unknown variant");
  }

  static std::string error_json(const std::exception& e) {
    const bool timed_out = dynamic_cast<const palitra::timeout_error*>(&e) != nullptr ||
                           dynamic_cast<const blocking_timeout*>(&e) != nullptr;
    std::string detail;
    for (const char* p = e.what(); *p != '\0' && detail.size() < 200; ++p) {
      const auto ch = static_cast<unsigned char>(*p);
      if (ch == '"' || ch == '\\') detail += '\\';
      detail += ch < 0x20 ? ' ' : static_cast<char>(ch);
    }
    return std::string("{\"error\":\"") + (timed_out ? "upstream timed out" : "upstream failed") +
           "\",\"detail\":\"" + detail + "\"}";
  }

  server_options o_;
  palitra::http::client client_; // (palitra) every request on every thread; unused otherwise
  std::atomic<std::uint64_t> fresh_connections_{0};
  std::atomic<bool> served_{false};
  httplib::Server svr_;
  int port_ = -1;
};

} // namespace example
