// runner::start and palitra::start (DESIGN.md §7, anyio's start_task): the
// caller blocks until the task calls set(v), then gets the task's future and
// v; a task that ends first reports why; misuse throws; a real loop service
// (a listener on an ephemeral port) is reachable as soon as start returns.
#include <atomic>
#include <chrono>
#include <cstring>
#include <span>
#include <string>
#include <thread>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <palitra/net.hpp>

#include "support.hpp"

using namespace std::chrono_literals;
using palitra::task;
using palitra_test::watchdog;

namespace {

/// A blocking POSIX client on the test thread: connect to 127.0.0.1:port,
/// send `out`, read `in_len` bytes back.
std::string talk_blocking(std::uint16_t port, const std::string& out, std::size_t in_len) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::send(fd, out.data(), out.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(out.size()));
  std::string in(in_len, '\0');
  std::size_t got = 0;
  while (got < in_len) {
    const ssize_t n = ::recv(fd, in.data() + got, in_len - got, 0);
    REQUIRE(n > 0);
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return in;
}

} // namespace

TEST_CASE("start returns the value set and the future of the task's result", "[start]") {
  watchdog w(30s);
  palitra::runner r;
  std::atomic<bool> ready{false};
  auto [fut, v] = r.start([&ready](palitra::started<int>& s) -> task<std::string> {
    co_await palitra::sleep_for(10ms); // start really waits for set()
    ready = true;
    s.set(42);
    co_await palitra::sleep_for(20ms); // and the task runs on after it
    co_return std::string("done");
  });
  REQUIRE(ready);
  REQUIRE(v == 42);
  REQUIRE(fut.get() == "done");
  palitra_test::require_quiet(palitra_test::settled_stats(r));
  REQUIRE(r.stats().completed == 1);
}

TEST_CASE("start with started void and with an explicit value type", "[start]") {
  watchdog w(30s);
  palitra::runner r;
  auto res = r.start([](palitra::started<>& s) -> task<int> {
    s.set();
    co_return 7;
  });
  REQUIRE(res.future.get() == 7);
  // A generic lambda names no started<V>: V is given.
  auto [fut, name] = r.start<std::string>([](auto& s) -> task<void> {
    s.set(std::string("svc"));
    co_return;
  });
  REQUIRE(name == "svc");
  fut.get();
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}

TEST_CASE("start rethrows the exception of a task that ends before set", "[start]") {
  watchdog w(30s);
  palitra::runner r;
  try {
    (void)r.start([](palitra::started<int>&) -> task<int> {
      co_await palitra::yield();
      throw palitra_test::custom_error(5);
    });
    FAIL("start returned");
  } catch (const palitra_test::custom_error& e) {
    REQUIRE(e.code == 5);
  }
  palitra_test::require_quiet(palitra_test::settled_stats(r));
  REQUIRE(r.stats().failed == 1);
}

TEST_CASE("start throws palitra::error when the task returns without calling set", "[start]") {
  watchdog w(30s);
  palitra::runner r;
  try {
    (void)r.start([](palitra::started<int>&) -> task<int> { co_return 1; });
    FAIL("start returned");
  } catch (const palitra::runner_closed_error&) {
    FAIL("wrong error");
  } catch (const palitra::error& e) {
    REQUIRE(std::string(e.what()).find("without calling set") != std::string::npos);
  }
  palitra_test::require_quiet(palitra_test::settled_stats(r));
  REQUIRE(r.stats().completed == 1);
}

TEST_CASE("started set twice throws palitra::error in the task", "[start]") {
  watchdog w(30s);
  palitra::runner r;
  auto [fut, v] = r.start([](palitra::started<int>& s) -> task<bool> {
    s.set(1);
    try {
      s.set(2);
    } catch (const palitra::error&) {
      co_return true;
    }
    co_return false;
  });
  REQUIRE(v == 1);
  REQUIRE(fut.get());
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}

TEST_CASE("start on the loop thread throws reentrancy_error and runs nothing", "[start]") {
  watchdog w(30s);
  palitra::runner r;
  std::atomic<int> ran{0};
  const bool threw = r.run([&]() -> task<bool> {
    try {
      (void)r.start([&ran](palitra::started<>& s) -> task<void> {
        ++ran;
        s.set();
        co_return;
      });
    } catch (const palitra::reentrancy_error&) {
      co_return true;
    }
    co_return false;
  });
  REQUIRE(threw);
  REQUIRE(ran == 0);
  palitra_test::require_quiet(palitra_test::settled_stats(r));
  REQUIRE(r.stats().submitted == 1); // the run only
}

TEST_CASE("start on a closed runner throws runner_closed_error", "[start]") {
  watchdog w(30s);
  palitra::runner r;
  r.close();
  std::atomic<int> ran{0};
  REQUIRE_THROWS_AS(r.start([&ran](palitra::started<>& s) -> task<void> {
                      ++ran;
                      s.set();
                      co_return;
                    }),
                    palitra::runner_closed_error);
  REQUIRE(ran == 0);
  REQUIRE(r.stats().submitted == 0);
}

TEST_CASE("close while start waits releases it with runner_closed_error", "[start][close]") {
  watchdog w(30s);
  palitra::runner r;
  std::thread closer([&] {
    while (r.stats().in_flight == 0) std::this_thread::yield();
    r.close();
  });
  REQUIRE_THROWS_AS(r.start([](palitra::started<int>&) -> task<void> {
                      co_await palitra::sleep_for(60s); // never signals
                    }),
                    palitra::runner_closed_error);
  closer.join();
  palitra_test::require_quiet(r.stats());
  REQUIRE(r.stats().cancelled == 1);
}

TEST_CASE("start with a timeout cancels a task that never calls set", "[start][timeout]") {
  watchdog w(30s);
  palitra::runner r;
  std::atomic<int> alive{0};
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE_THROWS_AS(r.start(
                        [p = palitra_test::probe(alive)](palitra::started<int>&) -> task<void> {
                          co_await palitra::sleep_for(60s);
                        },
                        50ms),
                    palitra::timeout_error);
  REQUIRE(std::chrono::steady_clock::now() - t0 < 10s);
  REQUIRE(alive == 0); // the root frame (owning the callable) is gone
  // A task that signals in time is not disturbed by the timeout.
  auto [fut, v] = r.start(
      [](palitra::started<int>& s) -> task<int> {
        s.set(3);
        co_return 4;
      },
      10s);
  REQUIRE(v == 3);
  REQUIRE(fut.get() == 4);
  palitra_test::require_quiet(palitra_test::settled_stats(r));
  REQUIRE(r.stats().cancelled == 1);
}

TEST_CASE("start a tcp listener on port 0 and connect to it over loopback", "[start][net]") {
  watchdog w(30s);
  const int fds_before = palitra_test::open_fds();
  {
    palitra::runner r;
    auto [fut, port] =
        r.start([](palitra::started<std::uint16_t>& s) -> task<std::string> {
          auto l = palitra::net::tcp_listener::bind("127.0.0.1", 0);
          s.set(l.port()); // bound and listening: the caller may connect now
          auto c = co_await l.accept();
          std::string got(4, '\0');
          co_await c.read_exact(std::as_writable_bytes(std::span(got.data(), got.size())));
          const std::string reply = "pong";
          co_await c.write_all(std::as_bytes(std::span(reply.data(), reply.size())));
          co_return got;
        });
    REQUIRE(port != 0);
    REQUIRE(talk_blocking(port, "ping", 4) == "pong");
    REQUIRE(fut.get() == "ping");
    palitra_test::require_quiet(palitra_test::settled_stats(r));
  }
  REQUIRE(palitra_test::fds_settled(fds_before) == fds_before);
}

TEST_CASE("palitra::start on the global runner", "[start][global]") {
  watchdog w(30s);
  auto [fut, v] = palitra::start([](palitra::started<int>& s) -> task<int> {
    s.set(10);
    co_return 11;
  });
  REQUIRE(v == 10);
  REQUIRE(fut.get() == 11);
  palitra::shutdown_global_runner();
}
