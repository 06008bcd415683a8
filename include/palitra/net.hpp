// palitra — TCP on the loop (DESIGN.md §2 "I/O"): net::tcp_listener and
// net::tcp_stream over the reactor's one-shot readiness waits. Sockets are
// non-blocking, close-on-exec, TCP_NODELAY; writes never raise SIGPIPE
// (MSG_NOSIGNAL). Hosts are numeric IPv4/IPv6 or names; a name is resolved
// through to_thread (getaddrinfo), never on the loop.
//
// Loop-affine (DESIGN.md §2): a listener or stream belongs to the runner
// whose loop first uses it; using it on another loop throws palitra::error.
// Either may be destroyed on any thread, also after its runner closed and
// during exit: off its loop the destructor hands the close to that loop (or
// closes in place once the loop is gone) and never blocks.
//
// Errors: operating-system errors throw io_error with the std::error_code
// (connection_refused, connection_reset, ...; an early EOF in read_exact is
// io_error with std::errc::connection_aborted). Misuse (a second concurrent
// reader or writer, a use after close) throws palitra::error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include <palitra/task.hpp>

namespace palitra {
namespace detail::net {
struct socket_core;
struct stream_maker;
} // namespace detail::net

namespace net {

/// A connected TCP socket. Move-only; closes its socket in the destructor.
/// One reader (read_some/read_exact) and one writer (write_all) may be
/// active at once (full duplex), as in asio, tokio and asyncio.
class tcp_stream {
public:
  tcp_stream() noexcept = default;
  tcp_stream(tcp_stream&& o) noexcept : core_(o.core_) { o.core_ = nullptr; }
  tcp_stream& operator=(tcp_stream&& o) noexcept;
  tcp_stream(const tcp_stream&) = delete;
  tcp_stream& operator=(const tcp_stream&) = delete;
  ~tcp_stream() { close(); }

  /// Connect to `host`:`port`, trying each resolved address in turn.
  /// Thread: a loop thread. Cancel: yes (the socket is closed).
  /// Throws: io_error (connection_refused, network_unreachable, ... from
  /// the last address tried; a name that does not resolve: the
  /// getaddrinfo error text with std::errc::host_unreachable).
  static task<tcp_stream> connect(std::string host, std::uint16_t port);

  /// Read what is there, up to buf.size() bytes, waiting for at least one;
  /// 0 = orderly EOF (or an empty buf). Cancel: yes (nothing was consumed).
  /// Throws: io_error (connection_reset, ...; operation_canceled if the
  /// stream is closed while this waits).
  task<std::size_t> read_some(std::span<std::byte> buf);
  /// Read exactly buf.size() bytes. Throws: io_error with
  /// std::errc::connection_aborted on EOF before the end (the bytes read so
  /// far are in buf); as read_some otherwise. Cancel: yes; the bytes read
  /// before the cancellation are consumed.
  task<void> read_exact(std::span<std::byte> buf);
  /// Write every byte, waiting while the socket buffer is full.
  /// Cancel: yes; a prefix may have been sent. Throws: io_error
  /// (broken_pipe, connection_reset, ...; never SIGPIPE).
  task<void> write_all(std::span<const std::byte> buf);

  /// Close now (idempotent). A read or write waiting on the stream ends
  /// with io_error(operation_canceled). Thread: any (as the destructor).
  void close() noexcept;
  bool is_open() const noexcept { return core_ != nullptr; }
  /// The socket, or -1 when closed. It stays the stream's: do not close it.
  int native_handle() const noexcept;

private:
  friend struct detail::net::stream_maker;
  explicit tcp_stream(detail::net::socket_core* c) noexcept : core_(c) {}
  detail::net::socket_core* core_ = nullptr;
};

/// A listening TCP socket. Move-only; closes its socket in the destructor.
class tcp_listener {
public:
  tcp_listener() noexcept = default;
  tcp_listener(tcp_listener&& o) noexcept : core_(o.core_) { o.core_ = nullptr; }
  tcp_listener& operator=(tcp_listener&& o) noexcept;
  tcp_listener(const tcp_listener&) = delete;
  tcp_listener& operator=(const tcp_listener&) = delete;
  ~tcp_listener() { close(); }

  /// Bind and listen (SO_REUSEADDR). `host`: a numeric IPv4 or IPv6
  /// address, "localhost" (127.0.0.1), "" (every IPv4 interface) or a name.
  /// Port 0 = ephemeral (see port()). Thread: any; a name is resolved with
  /// getaddrinfo here, so on a loop thread only numeric hosts and
  /// "localhost" are accepted (else palitra::error: bind it before, from a
  /// sync thread). Throws: io_error (address_in_use, ...).
  static tcp_listener bind(std::string host, std::uint16_t port, int backlog = 128);

  /// The bound port. Throws: palitra::error once closed.
  std::uint16_t port() const;
  /// Wait for and accept one connection. Thread: a loop thread.
  /// Cancel: yes (no connection is taken). Throws: io_error for that accept
  /// (too_many_files_open on EMFILE: the pending connection stays queued and
  /// the listener stays usable; it never spins).
  task<tcp_stream> accept();
  /// Close now (idempotent); a waiting accept ends with
  /// io_error(operation_canceled). Thread: any (as the destructor).
  void close() noexcept;
  bool is_open() const noexcept { return core_ != nullptr; }
  int native_handle() const noexcept;

private:
  detail::net::socket_core* core_ = nullptr;
};

} // namespace net
} // namespace palitra
