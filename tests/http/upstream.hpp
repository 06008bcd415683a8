// A small HTTP/1.1 keep-alive upstream for the http tests, written with
// palitra's own net API and run on a runner of its own (127.0.0.1 only).
// It reads a request head (and a Content-Length body), and answers by path:
//   /comments/N     200, {"id":N,...} after `delay`
//   /echo           200, the request body, and the request's headers as
//                   X-Echo-<name> response headers
//   /slow           200 after 2 s (a timeout test's upstream)
//   /big?N          200, N bytes
//   /reset...       starts a 100-byte body, sends 10 bytes, resets
//   /malformed      a response that is not HTTP
//   /redirect       302 to /comments/1
//   /status/N       status N, body "status N"
//   anything else   404
// It counts the connections it accepted. A test fixture: its parsing is only
// what the tests need (the client under test is libcurl).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <sys/socket.h>

#include <palitra/palitra.hpp>

namespace palitra_test {

class upstream {
public:
  explicit upstream(std::chrono::milliseconds delay = std::chrono::milliseconds(0))
      : delay_(delay), listener_(palitra::net::tcp_listener::bind("127.0.0.1", 0)) {
    port_ = listener_.port();
    r_.spawn(accept_loop());
  }
  ~upstream() { r_.close(); }

  std::uint16_t port() const noexcept { return port_; }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  long accepted() const noexcept { return accepted_.load(); }
  /// Close every open connection of the upstream (idle keep-alive ones
  /// included), with a reset.
  void reset_all() {
    r_.run([this]() -> palitra::task<void> {
      for (auto* s : open_) {
        linger l{1, 0};
        ::setsockopt(s->native_handle(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
        s->close();
      }
      co_return;
    });
  }

private:
  palitra::task<void> accept_loop() {
    for (;;) {
      palitra::net::tcp_stream s = co_await listener_.accept();
      accepted_.fetch_add(1);
      r_.spawn(serve(std::move(s)));
    }
  }

  static std::size_t content_length(const std::string& head) {
    std::string lower = head;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const auto p = lower.find("\r\ncontent-length:");
    return p == std::string::npos ? 0 : std::strtoul(lower.c_str() + p + 17, nullptr, 10);
  }

  static std::string reply(int status, const std::string& body, const std::string& extra = "") {
    return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\n" +
           "Content-Length: " + std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
  }

  palitra::task<void> serve(palitra::net::tcp_stream s) {
    open_.push_back(&s);
    struct unlist {
      std::vector<palitra::net::tcp_stream*>& v;
      palitra::net::tcp_stream* me;
      ~unlist() { std::erase(v, me); }
    } guard{open_, &s};
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
        std::string head = in.substr(0, end + 2);
        const std::size_t want = content_length(head);
        while (in.size() < end + 4 + want) {
          const std::size_t n = co_await s.read_some(std::as_writable_bytes(std::span(buf)));
          if (n == 0) co_return;
          in.append(buf, n);
        }
        std::string body = in.substr(end + 4, want);
        in.erase(0, end + 4 + want);
        const auto sp1 = head.find(' ');
        const std::string path = head.substr(sp1 + 1, head.find(' ', sp1 + 1) - sp1 - 1);
        std::string out;
        if (path.rfind("/comments/", 0) == 0) {
          if (delay_.count() > 0) co_await palitra::sleep_for(delay_);
          out = reply(200, "{\"id\":" + path.substr(10) + ",\"text\":\"comment " + path.substr(10) + "\"}");
        } else if (path == "/echo") {
          std::string extra;
          for (std::size_t p = head.find("\r\n"); p != std::string::npos && p + 2 < head.size();) {
            const std::size_t e = head.find("\r\n", p + 2);
            const std::string line = head.substr(p + 2, e - p - 2);
            const auto colon = line.find(':');
            if (colon != std::string::npos)
              extra += "X-Echo-" + line.substr(0, colon) + ":" + line.substr(colon + 1) + "\r\n";
            p = e;
          }
          out = reply(200, body, extra);
        } else if (path == "/slow") {
          co_await palitra::sleep_for(std::chrono::seconds(2));
          out = reply(200, "{\"slow\":true}");
        } else if (path.rfind("/big?", 0) == 0) {
          out = reply(200, std::string(std::strtoul(path.c_str() + 5, nullptr, 10), 'b'));
        } else if (path.rfind("/reset", 0) == 0) { // /reset and /reset/anything
          const std::string part = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
          co_await s.write_all(std::as_bytes(std::span(part)));
          linger l{1, 0};
          ::setsockopt(s.native_handle(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
          co_return; // closed with a reset mid-body
        } else if (path == "/malformed") {
          const std::string junk = "this is not HTTP at all\r\n\r\n";
          co_await s.write_all(std::as_bytes(std::span(junk)));
          co_return;
        } else if (path == "/redirect") {
          out = reply(302, "", "Location: /comments/1\r\n");
        } else if (path.rfind("/status/", 0) == 0) {
          const int st = std::atoi(path.c_str() + 8);
          out = reply(st, "status " + std::to_string(st));
        } else {
          out = reply(404, "{\"error\":\"not found\"}");
        }
        co_await s.write_all(std::as_bytes(std::span(out)));
      }
    } catch (const palitra::io_error&) {
      // the client went away
    }
  }

  std::chrono::milliseconds delay_;
  palitra::runner r_;
  palitra::net::tcp_listener listener_;
  std::uint16_t port_ = 0;
  std::atomic<long> accepted_{0};
  std::vector<palitra::net::tcp_stream*> open_; // upstream loop only
};

} // namespace palitra_test
