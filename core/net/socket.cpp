// palitra — socket cores: binding to a loop, closing, the hand-off of a
// close from another thread (socket.hpp; loop_anchor.hpp H1-H3).
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

// Loop thread (or no loop at all: unbound, or the loop is gone).
void drop_ref(socket_core* c) noexcept {
  if (--c->refs == 0) delete c;
}

// Close the fd and give up the owner's reference, on the home loop.
void close_on_loop(socket_core* c) noexcept {
  if (c->handle.attached) c->home->io().detach(c->handle); // I5: before close(fd)
  if (c->fd >= 0) ::close(c->fd);
  c->fd = -1;
  drop_ref(c);
}

void dispatch_close(queue_node* n, loop&) noexcept {
  close_on_loop(static_cast<socket_core*>(n)); // H1: popped by the home loop
}

void close_in_place(queue_node& n) noexcept {
  // H2: the loop is gone, so no poll runs and no task is inside (E2);
  // closing the fd takes it out of the dead epoll set too.
  auto* c = static_cast<socket_core*>(&n);
  if (c->fd >= 0) ::close(c->fd);
  c->fd = -1;
  drop_ref(c);
}

} // namespace

[[noreturn]] void throw_errno(const std::string& what, int err) {
  throw io_error(what, std::error_code(err, std::system_category()));
}

loop& enter(socket_core& c, const char* what) {
  loop* l = current_loop();
  if (l == c.home && l != nullptr) [[likely]] {
    if (c.fd < 0) throw error(std::string(what) + ": the " + c.kind + " is closed");
    return *l;
  }
  if (l == nullptr)
    throw error(std::string(what) + ": not on a palitra loop thread; co_await it inside a task "
                                    "run by a runner");
  if (c.home != nullptr)
    throw error(std::string(what) + ": this " + c.kind +
                " belongs to another runner's loop (the one that first used it); use it there");
  if (c.fd < 0) throw error(std::string(what) + ": the " + c.kind + " is closed");
  if (const std::error_code ec = l->io().attach(c.handle, c.fd))
    throw io_error(std::string(what) + ": cannot register the socket with the loop", ec);
  c.home = l;
  c.anchor = l->anchor();
  return *l;
}

void release(socket_core* c) noexcept {
  if (c == nullptr) return;
  if (c->home == nullptr) { // never used on a loop: nobody else can see it
    close_in_place(*c);
    return;
  }
  if (current_loop() == c->home) {
    close_on_loop(c);
    return;
  }
  c->dispatch = &dispatch_close;
  anchor_ref a = c->anchor; // c may be gone once handed off
  a->hand_off(*c, &close_in_place);
}

void leave(socket_core& c) noexcept { drop_ref(&c); }

use::use(socket_core* c, const char* what, bool socket_core::*slot)
    : c_(c), slot_(slot), what_(what) {
  if (c == nullptr) throw error(std::string(what) + ": the socket is closed (or moved from)");
  enter(*c, what);
  if (slot != nullptr) {
    if (c->*slot)
      throw error(std::string(what) + ": another task is already " +
                  (slot == &socket_core::writing ? "writing to" : "reading from") + " this " +
                  c->kind + " (one reader and one writer at a time)");
    c->*slot = true;
  }
  ++c->refs;
}

use::~use() {
  if (slot_ != nullptr) c_->*slot_ = false;
  leave(*c_);
}

void use::throw_closed() const {
  throw io_error(std::string(what_) + ": the " + c_->kind + " was closed while this task waited",
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
