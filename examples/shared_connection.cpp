// palitra example: one TCP connection kept on the loop and shared by many
// synchronous threads ("preserve sessions and connections across calls").
//
// line_client is an ordinary sync-side object. Its tcp_stream lives on the
// global runner's loop: the first palitra::run connects it, and every later
// run, from any thread, reuses it. A palitra::mutex serializes the
// request/response exchanges, so one request is on the wire at a time and
// each reply is read by the task that sent its request. (Pipelining would
// let requests overlap, at the price of a queue that hands each reply to
// the oldest waiting request; with a server a loopback hop away, the simple
// lock is what this example wants to show.) The server is the echo server
// of echo_server.cpp, started in-process on its own runner; it counts the
// connections it accepted, which must be 1.
//
//   shared_connection [--calls N] [--threads T]   (defaults 8000, 8)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <palitra/palitra.hpp>

#include "echo_core.hpp"

namespace {

/// A line protocol client over one connection, shared by every thread.
/// Thread: call() from any number of threads at once. Lifetime: may be
/// destroyed on a sync thread (the stream's close goes to its loop).
class line_client {
public:
  explicit line_client(std::uint16_t port) : port_(port) {}

  /// Sends `line` + '\n' and returns the reply line. Blocks.
  std::string call(std::string line) { return palitra::run(exchange(std::move(line))); }

private:
  palitra::task<std::string> exchange(std::string line) {
    auto held = co_await lock_.scoped(); // one exchange on the wire at a time
    if (!conn_.is_open()) conn_ = co_await palitra::net::tcp_stream::connect("127.0.0.1", port_);
    line += '\n';
    co_await conn_.write_all(std::as_bytes(std::span(line)));
    co_return co_await read_line();
  }

  palitra::task<std::string> read_line() {
    for (std::size_t nl; (nl = pending_.find('\n')) == std::string::npos;) {
      char buf[512];
      const std::size_t n = co_await conn_.read_some(std::as_writable_bytes(std::span(buf)));
      if (n == 0) throw std::runtime_error("line_client: the server closed the connection");
      pending_.append(buf, n);
    }
    const std::size_t nl = pending_.find('\n');
    std::string reply = pending_.substr(0, nl);
    pending_.erase(0, nl + 1);
    co_return reply;
  }

  std::uint16_t port_;
  palitra::mutex lock_;            // loop-affine, like conn_
  palitra::net::tcp_stream conn_;  // created by the first call, reused by all
  std::string pending_;            // bytes read past the last reply
};

long arg(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::strtol(argv[i + 1], nullptr, 10);
  return fallback;
}

} // namespace

int main(int argc, char** argv) {
  const long calls = arg(argc, argv, "--calls", 8000);
  const long threads = arg(argc, argv, "--threads", 8);
  if (calls < 1 || threads < 1 || threads > 1024) {
    std::fprintf(stderr, "usage: shared_connection [--calls N] [--threads 1..1024]\n");
    return 2;
  }
  palitra::runtime_guard guard; // the global runner closes before main returns

  // The echo server, on its own runner.
  std::uint64_t accepted = 0;
  palitra::runner server;
  auto listener = palitra::net::tcp_listener::bind("127.0.0.1", 0);
  server.spawn(example::serve(server, listener, accepted));

  std::vector<long> wrong(static_cast<std::size_t>(threads));
  const auto t0 = std::chrono::steady_clock::now();
  {
    line_client client(listener.port());
    std::vector<std::thread> workers;
    for (long t = 0; t < threads; ++t)
      workers.emplace_back([&, t] {
        for (long i = t; i < calls; i += threads) {
          const std::string req = "thread " + std::to_string(t) + " call " + std::to_string(i);
          if (client.call(req) != req) ++wrong[static_cast<std::size_t>(t)];
        }
      });
    for (auto& w : workers) w.join();
  } // the client, and its connection, are destroyed here, on this sync thread
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  server.close(); // after the join, `accepted` may be read here

  long bad = 0;
  for (long w : wrong) bad += w;
  std::printf("calls: %ld from %ld threads, wrong replies: %ld\n", calls, threads, bad);
  std::printf("connections accepted: %llu\n", static_cast<unsigned long long>(accepted));
  std::printf("time: %.1f ms (%.1f us per call)\n", ms, ms * 1000.0 / static_cast<double>(calls));
  return bad == 0 && accepted == 1 ? 0 : 1;
}
