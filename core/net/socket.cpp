// palitra — socket cores: binding, closing, the last reference
// (socket.hpp; runtime/loop_affine.hpp B1-B3, R1-R2).
#include <cerrno>
#include <string>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <palitra/config.hpp>
#include <palitra/error.hpp>

#include "net/socket.hpp"

namespace palitra::detail::net {
namespace {

// Close the socket. On the loop (`dead` false) the handle leaves the
// reactor first (I5), ending a waiting task's op with ECANCELED; after the
// loop is gone (`dead`) no reactor is touched: closing the fd takes it out
// of the dead epoll set.
void close_socket(socket_core& c, bool dead) noexcept {
  if (c.handle.attached && !dead) c.home()->io().detach(c.handle);
  if (c.fd >= 0) ::close(c.fd);
  c.fd = -1;
}

void close_fn(loop_affine& a, bool dead) noexcept { close_socket(static_cast<socket_core&>(a), dead); }

void final_on_loop(loop_affine& a) noexcept {
  auto* c = static_cast<socket_core*>(&a);
  close_socket(*c, false);
  delete c;
}

void final_in_place(loop_affine& a) noexcept {
  auto* c = static_cast<socket_core*>(&a);
  close_socket(*c, true);
  delete c;
}

} // namespace

socket_core::socket_core(int fd, const char* kind) noexcept
    : loop_affine(kind, &final_on_loop, &final_in_place), fd(fd) {}

[[noreturn]] void throw_errno(const std::string& what, int err) {
  throw io_error(what, std::error_code(err, std::system_category()));
}

void close_owner(socket_core* c) noexcept {
  if (c == nullptr) return;
  if (c->release_unbound()) {
    close_socket(*c, true); // B2: never on a loop, nobody else can reach the fd
  } else {
    c->on_home(&close_fn); // on the loop, or handed off (H1/H2)
  }
  c->unref();
}

use::use(socket_core* c, const char* what, bool socket_core::*slot)
    : c_(c), slot_(slot), what_(what) {
  if (c == nullptr) throw error(std::string(what) + ": the socket is closed (or moved from)");
  l_ = &c->enter(what);
  if (c->fd < 0) throw error(std::string(what) + ": the " + c->kind() + " is closed");
  if (!c->handle.attached)
    if (const std::error_code ec = l_->io().attach(c->handle, c->fd))
      throw io_error(std::string(what) + ": cannot register the socket with the loop", ec);
  if (slot != nullptr) {
    if (c->*slot)
      throw error(std::string(what) + ": another task is already " +
                  (slot == &socket_core::writing ? "writing to" : "reading from") + " this " +
                  c->kind() + " (one reader and one writer at a time)");
    c->*slot = true;
  }
}

use::~use() {
  if (slot_ != nullptr && l_ != nullptr) c_->*slot_ = false;
}

void use::throw_closed() const {
  throw io_error(std::string(what_) + ": the " + c_->kind() + " was closed while this task waited",
                 std::make_error_code(std::errc::operation_canceled));
}

int open_socket(int family, const char* what) {
  const int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) throw_errno(what, errno);
  return fd;
}

void set_nodelay(int fd) noexcept {
  const int one = 1;
  [[maybe_unused]] const int r = ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

} // namespace palitra::detail::net
