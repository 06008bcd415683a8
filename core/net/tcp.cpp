// palitra — net::tcp_stream and net::tcp_listener (net.hpp) over the
// reactor's one-shot readiness waits: every operation tries its syscall
// first and waits only on EAGAIN, so a socket with data ready costs no
// epoll_ctl and no suspension (reactor_epoll.cpp: lazy disarm).
#include <cerrno>
#include <string>
#include <utility>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <palitra/error.hpp>
#include <palitra/net.hpp>

#include "net/resolve.hpp"
#include "net/socket.hpp"
#include "reactor/io_await.hpp"

namespace palitra::detail::net {
namespace {

constexpr const char* stream_kind = "palitra::net::tcp_stream";
constexpr const char* listener_kind = "palitra::net::tcp_listener";

bool would_block(int e) noexcept { return e == EAGAIN || e == EWOULDBLOCK; }

task<std::size_t> read_some(affine_ref ref, std::span<std::byte> buf) {
  auto* c = static_cast<socket_core*>(ref.get());
  constexpr const char* what = "palitra::net::tcp_stream::read_some";
  use u(c, what, &socket_core::reading);
  for (;;) {
    const ssize_t n = ::recv(u.core().fd, buf.data(), buf.size(), 0);
    if (n >= 0) co_return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    if (!would_block(errno)) throw_errno(what, errno);
    if (co_await io_awaiter(u.home(), u.core().handle, io_kind::readable, what) ==
        io_wait_result::closed)
      u.throw_closed();
  }
}

task<void> read_exact(affine_ref ref, std::span<std::byte> buf) {
  auto* c = static_cast<socket_core*>(ref.get());
  constexpr const char* what = "palitra::net::tcp_stream::read_exact";
  use u(c, what, &socket_core::reading);
  std::size_t got = 0;
  while (got < buf.size()) {
    const ssize_t n = ::recv(u.core().fd, buf.data() + got, buf.size() - got, 0);
    if (n > 0) {
      got += static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0)
      throw io_error(std::string(what) + ": the peer closed the connection after " +
                         std::to_string(got) + " of " + std::to_string(buf.size()) + " bytes",
                     std::make_error_code(std::errc::connection_aborted));
    if (errno == EINTR) continue;
    if (!would_block(errno)) throw_errno(what, errno);
    if (co_await io_awaiter(u.home(), u.core().handle, io_kind::readable, what) ==
        io_wait_result::closed)
      u.throw_closed();
  }
}

task<void> write_all(affine_ref ref, std::span<const std::byte> buf) {
  auto* c = static_cast<socket_core*>(ref.get());
  constexpr const char* what = "palitra::net::tcp_stream::write_all";
  use u(c, what, &socket_core::writing);
  std::size_t sent = 0;
  while (sent < buf.size()) {
    // MSG_NOSIGNAL: a write to a reset peer is EPIPE here, never SIGPIPE.
    const ssize_t n = ::send(u.core().fd, buf.data() + sent, buf.size() - sent, MSG_NOSIGNAL);
    if (n >= 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (!would_block(errno)) throw_errno(what, errno);
    if (co_await io_awaiter(u.home(), u.core().handle, io_kind::writable, what) ==
        io_wait_result::closed)
      u.throw_closed();
  }
}

// Owns a socket that is not a stream yet.
struct fd_owner {
  int fd;
  ~fd_owner() {
    if (fd >= 0) ::close(fd);
  }
};

} // namespace

// Only this file makes streams from cores.
struct stream_maker {
  static palitra::net::tcp_stream make(socket_core* c) noexcept { return palitra::net::tcp_stream(c); }
  static socket_core* core(const palitra::net::tcp_stream& s) noexcept { return s.core_; }
};

namespace {

task<palitra::net::tcp_stream> connect(std::string host, std::uint16_t port) {
  constexpr const char* what = "palitra::net::tcp_stream::connect";
  require_loop(what);
  const std::vector<endpoint> addrs = co_await resolve(host, port, what);
  int last = ECONNREFUSED;
  for (const endpoint& e : addrs) {
    fd_owner s{open_socket(e.family(), what)};
    int r;
    do r = ::connect(s.fd, reinterpret_cast<const sockaddr*>(&e.addr), e.len);
    while (r != 0 && errno == EINTR);
    if (r != 0 && errno != EINPROGRESS) {
      last = errno;
      continue;
    }
    auto stream = stream_maker::make(new socket_core(std::exchange(s.fd, -1), stream_kind));
    if (r != 0) { // in progress: writable once it succeeded or failed
      socket_core* c = stream_maker::core(stream);
      use u(c, what, &socket_core::writing);
      if (co_await io_awaiter(u.home(), c->handle, io_kind::writable, what) ==
          io_wait_result::closed)
        u.throw_closed();
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err != 0) {
        last = err;
        continue; // `stream` closes the socket
      }
    }
    set_nodelay(stream.native_handle());
    co_return stream;
  }
  throw io_error(std::string(what) + " " + describe(host, port),
                 std::error_code(last, std::system_category()));
}

task<palitra::net::tcp_stream> accept(affine_ref ref) {
  auto* c = static_cast<socket_core*>(ref.get());
  constexpr const char* what = "palitra::net::tcp_listener::accept";
  use u(c, what, &socket_core::reading);
  for (;;) {
    const int fd = ::accept4(u.core().fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      set_nodelay(fd);
      co_return stream_maker::make(new socket_core(fd, stream_kind));
    }
    // A connection that died in the backlog, or a signal: take the next.
    if (errno == EINTR || errno == ECONNABORTED) continue;
    // EMFILE/ENFILE/ENOBUFS/ENOMEM and the rest are this accept's error; the
    // connection stays queued, and as no op waits on the listener now, the
    // reactor disarms it at the next report: no spin (reactor I7).
    if (!would_block(errno)) throw_errno(what, errno);
    if (co_await io_awaiter(u.home(), u.core().handle, io_kind::readable, what) ==
        io_wait_result::closed)
      u.throw_closed();
  }
}

} // namespace
} // namespace palitra::detail::net

namespace palitra::net {

using detail::net::socket_core;
using detail::affine_ref;

// ---- tcp_stream -------------------------------------------------------------

tcp_stream& tcp_stream::operator=(tcp_stream&& o) noexcept {
  if (this != &o) {
    close();
    core_ = std::exchange(o.core_, nullptr);
  }
  return *this;
}

task<tcp_stream> tcp_stream::connect(std::string host, std::uint16_t port) {
  return detail::net::connect(std::move(host), port);
}

task<std::size_t> tcp_stream::read_some(std::span<std::byte> buf) {
  return detail::net::read_some(detail::affine_ref(core_), buf);
}

task<void> tcp_stream::read_exact(std::span<std::byte> buf) {
  return detail::net::read_exact(detail::affine_ref(core_), buf);
}

task<void> tcp_stream::write_all(std::span<const std::byte> buf) {
  return detail::net::write_all(detail::affine_ref(core_), buf);
}

void tcp_stream::close() noexcept { detail::net::close_owner(std::exchange(core_, nullptr)); }

int tcp_stream::native_handle() const noexcept { return core_ != nullptr ? core_->fd : -1; }

// ---- tcp_listener -----------------------------------------------------------

tcp_listener& tcp_listener::operator=(tcp_listener&& o) noexcept {
  if (this != &o) {
    close();
    core_ = std::exchange(o.core_, nullptr);
  }
  return *this;
}

tcp_listener tcp_listener::bind(std::string host, std::uint16_t port, int backlog) {
  constexpr const char* what = "palitra::net::tcp_listener::bind";
  std::vector<detail::net::endpoint> addrs;
  if (host.empty()) host = "0.0.0.0";
  if (!detail::net::parse_numeric(host, port, addrs)) {
    if (detail::current_loop() != nullptr)
      throw error(std::string(what) + ": '" + host +
                  "' is a name, and resolving it would block the loop; bind a numeric address "
                  "here, or bind from a sync thread");
    addrs = detail::net::resolve_blocking(host, port, what);
  }
  int last = EADDRNOTAVAIL;
  for (const auto& e : addrs) {
    detail::net::fd_owner s{detail::net::open_socket(e.family(), what)};
    const int one = 1;
    [[maybe_unused]] const int r = ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(s.fd, reinterpret_cast<const sockaddr*>(&e.addr), e.len) != 0 ||
        ::listen(s.fd, backlog) != 0) {
      last = errno;
      continue;
    }
    tcp_listener l;
    l.core_ = new socket_core(std::exchange(s.fd, -1), detail::net::listener_kind);
    return l;
  }
  detail::net::throw_errno(std::string(what) + " " + detail::net::describe(host, port), last);
}

std::uint16_t tcp_listener::port() const {
  if (core_ == nullptr || core_->fd < 0)
    throw error("palitra::net::tcp_listener::port: the listener is closed");
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (::getsockname(core_->fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    detail::net::throw_errno("palitra::net::tcp_listener::port", errno);
  return ntohs(a.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&a)->sin6_port
                                       : reinterpret_cast<sockaddr_in*>(&a)->sin_port);
}

task<tcp_stream> tcp_listener::accept() { return detail::net::accept(detail::affine_ref(core_)); }

void tcp_listener::close() noexcept { detail::net::close_owner(std::exchange(core_, nullptr)); }

int tcp_listener::native_handle() const noexcept { return core_ != nullptr ? core_->fd : -1; }

} // namespace palitra::net
