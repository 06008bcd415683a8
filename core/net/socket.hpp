// palitra — what a net::tcp_stream / net::tcp_listener owns: the socket and
// its reactor handle, on a loop_affine core (runtime/loop_affine.hpp: the
// binding B1-B3 and the references R1-R2).
//
// Ownership:
//   - the public object holds the owner's reference until close() or its
//     destruction; every read/write/accept task holds one from its creation
//     (an affine_ref parameter), so a core outlives every task made on it;
//   - close() closes the socket at once, whoever still holds a reference:
//     on the home loop (its own thread, or handed off, H1) it detaches the
//     handle first (reactor I5), which ends a waiting reader or writer with
//     ECANCELED (they report "closed"); never bound: in place (B2); loop
//     gone: in place, without the reactor (H2);
//   - the last reference deletes the core (F1).
// Loop thread for everything below except close_owner().
#pragma once

#include <string>

#include "reactor/reactor.hpp"
#include "runtime/loop.hpp"
#include "runtime/loop_affine.hpp"

namespace palitra::detail::net {

struct socket_core final : loop_affine {
  socket_core(int fd, const char* kind) noexcept;

  int fd;               ///< -1 once closed
  io_handle handle;     ///< attached at the first use on the loop
  bool reading = false; ///< a reader (read_some/read_exact/accept) is inside
  bool writing = false; ///< a writer (write_all/connect) is inside
};

/// The owner lets go: close now, drop the owner's reference. Any thread.
void close_owner(socket_core* c) noexcept;

/// A task's use of a core while it runs: binds it (B1) and attaches its
/// handle on first use, and takes the reader or writer slot if `slot` is
/// given. Throws palitra::error off a loop, on another runner's loop, once
/// closed, or for a second reader/writer; io_error if the reactor refuses
/// the fd. The task's affine_ref keeps `c` alive.
class use {
public:
  use(socket_core* c, const char* what, bool socket_core::*slot = nullptr);
  ~use();
  use(const use&) = delete;
  use& operator=(const use&) = delete;
  loop& home() const noexcept { return *l_; }
  socket_core& core() const noexcept { return *c_; }
  /// The core was closed while this task waited (fd is -1 now).
  [[noreturn]] void throw_closed() const;

private:
  socket_core* c_;
  loop* l_ = nullptr;
  bool socket_core::*slot_;
  const char* what_;
};

/// A new non-blocking, close-on-exec TCP socket (TCP_NODELAY is set once
/// connected/accepted). Throws io_error.
int open_socket(int family, const char* what);
/// TCP_NODELAY on; failure is ignored (a Unix socket passed by mistake).
void set_nodelay(int fd) noexcept;
[[noreturn]] void throw_errno(const std::string& what, int err);

} // namespace palitra::detail::net
