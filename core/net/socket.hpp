// palitra — what a net::tcp_stream / net::tcp_listener owns: the socket, its
// reactor handle, its loop binding, and the count of tasks inside it.
//
// Ownership (loop thread, except release() off the loop, which hands off):
//   - the public object owns one reference until close()/destruction;
//   - every read/write/accept/connect coroutine running on it owns one
//     while it runs, so closing the stream under a waiting reader detaches
//     the handle (the wait ends with ECANCELED: reactor I5) and the core
//     lives until that reader has resumed and left.
//   - close order: detach, then ::close(fd) (reactor I5), then, once the
//     count is 0, delete.
// A core is bound to the first loop that uses it (enter()); it keeps an
// anchor_ref, so a release on another thread after the runner closed still
// finds out that the loop is gone (loop_anchor.hpp, H1-H3).
#pragma once

#include <string>

#include "reactor/reactor.hpp"
#include "runtime/loop.hpp"

namespace palitra::detail::net {

struct socket_core final : queue_node {
  explicit socket_core(int fd, const char* kind) noexcept : fd(fd), kind(kind) {}

  int fd;
  const char* kind;     ///< "palitra::net::tcp_stream", for errors
  io_handle handle;     ///< attached at the first enter()
  loop* home = nullptr; ///< the loop it belongs to (first use)
  anchor_ref anchor;    ///< home's anchor (set with home)
  int refs = 1;         ///< the owner + tasks inside (loop thread once bound)
  bool reading = false; ///< a reader (read_some/read_exact/accept) is inside
  bool writing = false; ///< a writer (write_all/connect) is inside
};

/// Binds `c` to this thread's loop on first use and attaches its handle.
/// Throws palitra::error off a loop, on another runner's loop or once
/// closed; io_error if the reactor refuses the fd.
loop& enter(socket_core& c, const char* what);
/// The owner lets go (close() / destructor), from any thread.
void release(socket_core* c) noexcept;
/// A task that entered leaves (loop thread).
void leave(socket_core& c) noexcept;

/// A task's claim on a core while it runs: enter + one reference; and the
/// reader or writer slot when `slot` is given.
class use {
public:
  use(socket_core* c, const char* what, bool socket_core::*slot = nullptr);
  ~use();
  use(const use&) = delete;
  use& operator=(const use&) = delete;
  loop& home() const noexcept { return *c_->home; }
  socket_core& core() const noexcept { return *c_; }
  /// The core was closed while this task waited (fd is -1 now).
  [[noreturn]] void throw_closed() const;

private:
  socket_core* c_;
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
