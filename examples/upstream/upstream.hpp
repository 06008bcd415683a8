// palitra examples — the upstream the HTTP examples call: a small HTTP/1.1
// keep-alive server written with palitra's own net API (not the tests'
// fixture, tests/http/upstream.hpp). It runs on a runner of its own, on
// 127.0.0.1, and answers
//   GET /comments/N   200, {"id":N,"text":"comment N"} after `delay`
//   anything else     404 (a request that is not GET also closes)
// (N: digits)
// reading only the request head (a GET has no body). It counts the
// connections it accepted: every one a client opened, which is how the demo
// and worker_pool tell reuse from a connection per call.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include <palitra/palitra.hpp>

namespace example {

class upstream {
public:
  /// Binds 127.0.0.1:`port` (0: ephemeral) and starts serving on its own
  /// runner. Thread: any sync thread. Throws: io_error (address_in_use, ...).
  explicit upstream(std::chrono::milliseconds delay = std::chrono::milliseconds(20),
                    std::uint16_t port = 0)
      : delay_(delay) {
    // runner::start: the listener is bound on the loop, and the constructor
    // returns once it accepts (or rethrows the bind's io_error).
    auto started = r_.start([this, port](palitra::started<std::uint16_t>& ready) -> palitra::task<void> {
      listener_ = palitra::net::tcp_listener::bind("127.0.0.1", port);
      ready.set(listener_.port());
      co_await accept_loop();
    });
    serving_ = std::move(started.future);
    port_ = started.value;
  }
  /// Cancels the accept loop and every connection, closes their sockets.
  ~upstream() { r_.close(); }
  upstream(const upstream&) = delete;
  upstream& operator=(const upstream&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  /// "http://127.0.0.1:PORT", the base the examples append /comments/N to.
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  /// Connections accepted so far. Thread: any.
  std::uint64_t accepted() const noexcept {
    return accepted_.load(std::memory_order_relaxed); // a counter: nothing is published with it
  }

private:
  palitra::task<void> accept_loop() {
    for (;;) {
      palitra::net::tcp_stream s = co_await listener_.accept();
      accepted_.fetch_add(1, std::memory_order_relaxed); // a counter, as accepted()
      r_.spawn(serve(std::move(s)));
    }
  }

  static std::string reply(int status, const std::string& body) {
    return "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " Not Found") +
           "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + body;
  }

  // One connection: request heads in, responses out, in order, until the
  // client closes it (keep-alive) or resets it.
  palitra::task<void> serve(palitra::net::tcp_stream s) {
    std::string in;
    char buf[4096];
    try {
      for (;;) {
        std::size_t end;
        while ((end = in.find("\r\n\r\n")) == std::string::npos) {
          const std::size_t n = co_await s.read_some(std::as_writable_bytes(std::span(buf)));
          if (n == 0) co_return; // the client closed
          in.append(buf, n);
        }
        const std::string line = in.substr(0, in.find("\r\n"));
        in.erase(0, end + 4);
        const bool get = line.rfind("GET ", 0) == 0;
        const std::string path = line.substr(line.find(' ') + 1, line.rfind(' ') - line.find(' ') - 1);
        std::string out;
        const std::string id = path.rfind("/comments/", 0) == 0 ? path.substr(10) : "";
        if (get && !id.empty() && id.find_first_not_of("0123456789") == std::string::npos) {
          co_await palitra::sleep_for(delay_);
          out = reply(200, "{\"id\":" + id + ",\"text\":\"comment " + id + "\"}");
        } else {
          out = reply(404, "{\"error\":\"not found\"}");
        }
        co_await s.write_all(std::as_bytes(std::span(out)));
        if (!get) co_return; // a body we did not read would be taken for the next head
      }
    } catch (const palitra::io_error&) {
      // a reset by the client ends this connection only
    }
  }

  std::chrono::milliseconds delay_;
  palitra::runner r_;
  palitra::net::tcp_listener listener_; // bound on r_'s loop (runner::start)
  std::uint16_t port_ = 0;
  palitra::future<void> serving_; // the accept loop; close() in ~upstream ends it
  std::atomic<std::uint64_t> accepted_{0};
};

} // namespace example
