// palitra examples — the core of an echo server on palitra's net API, shared
// by echo_server.cpp and shared_connection.cpp (README "Sockets on the loop").
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include <palitra/palitra.hpp>

namespace example {

/// Echoes what arrives until the client closes (or resets) the connection.
inline palitra::task<void> echo(palitra::net::tcp_stream s) {
  std::array<std::byte, 4096> buf;
  try {
    for (std::size_t n; (n = co_await s.read_some(buf)) != 0;) // 0: the client closed
      co_await s.write_all(std::span(buf.data(), n));
  } catch (const palitra::io_error&) {
    // a reset by the peer ends this connection only
  }
}

/// The accept loop: one spawned task per connection, until the runner
/// closes. `accepted` is loop-thread state: read it after close().
inline palitra::task<void> serve(palitra::runner& r, palitra::net::tcp_listener& l,
                                 std::uint64_t& accepted) {
  for (;;) {
    r.spawn(echo(co_await l.accept()));
    ++accepted;
  }
}

} // namespace example
