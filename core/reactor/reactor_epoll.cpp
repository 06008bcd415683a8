// palitra — the reactor on Linux: epoll + eventfd (contract: reactor.hpp).
//
// Registration: one epoll entry per io_handle, data.ptr = the handle (the
// wake eventfd's is nullptr), level-triggered, interest = what its ops want.
// A handle nobody waits on is registered EPOLLONESHOT with no interest, so
// an EPOLLERR/EPOLLHUP that the kernel reports regardless reaches us at most
// once and cannot spin the loop (I7). Disarming is lazy: a one-shot op's
// completion leaves the interest armed, and only a report that no op wanted
// costs an EPOLL_CTL_MOD; a socket read until EAGAIN and waited on again
// makes no epoll_ctl at all.
//
// Timers: the loop keeps its own heap and passes the time to the next
// deadline; epoll_pwait2 takes it with nanosecond precision. Where it is not
// available (ENOSYS before Linux 5.11; EPERM under seccomp filters that
// predate it: old podman/CentOS 7 and Debian buster containers, snapd before
// Dec 2024) we use epoll_wait, rounding the timeout *up* to whole
// milliseconds so a timer never fires early. The constructor probes once;
// before that probe, an EPERM made every wait fail at once and the idle loop
// burned a core (review 2026-12-07, A5).
#include <cerrno>
#include <ctime>
#include <system_error>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <palitra/config.hpp>
#include <palitra/error.hpp>

#include "diag/fault.hpp"
#include "reactor_epoll.hpp"

namespace palitra::detail {
namespace {

std::error_code last_error() noexcept { return {errno, std::system_category()}; }

// EPOLLRDHUP (the peer shut down writing) is EOF for a reader, so it is
// io_in; a writer waiting on a half-closed socket must not complete on it.
std::uint32_t to_epoll(std::uint32_t want) noexcept {
  std::uint32_t ev = 0;
  if ((want & io_in) != 0) ev |= EPOLLIN | EPOLLRDHUP;
  if ((want & io_out) != 0) ev |= EPOLLOUT;
  return ev != 0 ? ev : EPOLLONESHOT; // disarmed: see the file comment
}

std::uint32_t from_epoll(std::uint32_t ev) noexcept {
  std::uint32_t seen = 0;
  if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLPRI)) != 0) seen |= io_in;
  if ((ev & EPOLLOUT) != 0) seen |= io_out;
  if ((ev & EPOLLERR) != 0) seen |= io_err;
  if ((ev & EPOLLHUP) != 0) seen |= io_hup;
  return seen;
}

int sys_epoll_pwait2(int epfd, epoll_event* evs, int max, const timespec* ts) noexcept {
  if (const int err = fault::epoll_pwait2_error(); err != 0) [[unlikely]] {
    errno = err;
    return -1;
  }
  return epoll_pwait2(epfd, evs, max, ts, nullptr);
}

// "Not available here": an old kernel, or a seccomp filter that predates the
// syscall. Anything else (EBADF, EFAULT, EINVAL) is a palitra bug.
bool unavailable(int err) noexcept { return err == ENOSYS || err == EPERM; }

// Up to `max` events within `timeout_ns`; 0 on EINTR.
int wait_events(int epfd, bool& pwait2, epoll_event* evs, int max, std::int64_t timeout_ns) noexcept {
  if (pwait2) {
    timespec ts{};
    timespec* tsp = nullptr;
    if (timeout_ns >= 0) {
      ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000);
      tsp = &ts;
    }
    const int n = sys_epoll_pwait2(epfd, evs, max, tsp);
    if (n >= 0 || errno == EINTR) return n < 0 ? 0 : n;
    PALITRA_ASSERT(unavailable(errno), "epoll_pwait2 failed (EBADF/EFAULT/EINVAL: a palitra bug)");
    pwait2 = false; // a filter installed after the probe: epoll_wait from now on
  }
  int ms = -1;
  if (timeout_ns >= 0) {
    const std::int64_t up = (timeout_ns + 999'999) / 1'000'000; // never early
    ms = up > 1'000'000'000 ? 1'000'000'000 : static_cast<int>(up);
  }
  const int n = epoll_wait(epfd, evs, max, ms);
  if (n >= 0) return n;
  PALITRA_ASSERT(errno == EINTR, "epoll_wait failed (EBADF/EFAULT/EINVAL: a palitra bug)");
  return 0;
}

} // namespace

reactor_epoll::reactor_epoll() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) throw error("palitra::runner: epoll_create1 failed", last_error());
  wakefd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wakefd_ < 0) {
    const auto ec = last_error();
    close();
    throw error("palitra::runner: eventfd failed", ec);
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr; // the wake fd; every other entry points to its io_handle
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev) != 0) {
    const auto ec = last_error();
    close();
    throw error("palitra::runner: epoll_ctl(eventfd) failed", ec);
  }
  // The probe (A5): once, with a zero timeout, so a refused epoll_pwait2
  // costs one syscall here rather than a failed call per loop pass.
  const timespec zero{};
  if (sys_epoll_pwait2(epfd_, &ev, 1, &zero) < 0 && errno != EINTR) {
    PALITRA_ASSERT(unavailable(errno), "epoll_pwait2 probe failed (EBADF/EFAULT/EINVAL: a palitra bug)");
    pwait2_ = false;
  }
}

reactor_epoll::~reactor_epoll() { close(); }

void reactor_epoll::close() noexcept {
  if (wakefd_ >= 0) ::close(wakefd_);
  if (epfd_ >= 0) ::close(epfd_);
  wakefd_ = epfd_ = -1;
}

std::error_code reactor_epoll::attach(io_handle& h, int fd) noexcept {
  epoll_event ev{};
  ev.events = to_epoll(0);
  ev.data.ptr = &h;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) return last_error();
  ops_.attached(h, fd);
  return {};
}

void reactor_epoll::detach(io_handle& h) noexcept {
  if (!h.attached) return;
  // EBADF/ENOENT: the fd was closed first (a foreign library's order, curl
  // #14976); closing removed the entry unless the file is open elsewhere,
  // which only the owner can rule out. Nothing else can fail here.
  epoll_event ev{}; // kernels before 2.6.9 wanted a non-null pointer
  [[maybe_unused]] const int r = epoll_ctl(epfd_, EPOLL_CTL_DEL, h.fd, &ev);
  ops_.detached(h); // I5
}

std::error_code reactor_epoll::arm(io_handle& h, std::uint32_t want) noexcept {
  epoll_event ev{};
  ev.events = to_epoll(want);
  ev.data.ptr = &h;
  if (epoll_ctl(epfd_, EPOLL_CTL_MOD, h.fd, &ev) != 0) return last_error();
  h.armed = want;
  return {};
}

void reactor_epoll::start(io_op& op) noexcept {
  ops_.started(op);
  io_handle& h = *op.handle;
  const std::uint32_t want = h.armed | op.wants();
  if (want == h.armed) return; // already armed (lazy disarm): no syscall
  if (const auto ec = arm(h, want)) ops_.failed(op, ec); // ENOMEM; completes next poll
}

void reactor_epoll::cancel(io_op& op) noexcept {
  // The interest it armed is dropped lazily, at the first report nobody wants.
  ops_.cancel(op);
}

void reactor_epoll::set_interest(io_op& watch, std::uint32_t interest) noexcept {
  PALITRA_ASSERT(watch.kind == io_kind::watch, "set_interest on a one-shot op");
  ops_.set_interest(watch, interest);
  if (watch.state != io_op_state::pending && watch.state != io_op_state::ready) return;
  io_handle& h = *watch.handle;
  // A new bit is armed at once (the library waits on it now); a dropped
  // one stays armed until a report nobody wants disarms it (poll's lazy
  // disarm), as for one-shot ops: harvest filters by interest, so nothing
  // is reported for it meanwhile. curl parks a pooled connection after
  // every transfer and takes it again for the next: disarming eagerly cost
  // an epoll_ctl per request for a readable interest that an idle
  // keep-alive socket never reports.
  std::uint32_t want = io_ops::wanted(h) | (watch.state == io_op_state::ready ? interest : 0);
  if ((want & ~h.armed) == 0) return;
  want |= h.armed;
  if (const auto ec = arm(h, want); ec && watch.state == io_op_state::pending) ops_.failed(watch, ec);
}

int reactor_epoll::poll(std::int64_t timeout_ns) noexcept {
  if (ops_.begin_poll()) timeout_ns = 0; // I6: completions are due
  // 256 (12 KiB of loop stack): a pass with hundreds of busy sockets
  // harvests them in one syscall; 64 made a request on the 401st socket
  // wait ~6 passes behind the others (stress io_close). More stay
  // level-triggered in the kernel, which rotates its ready list, so none
  // starves. libuv and tokio take up to 1024.
  epoll_event evs[256];
  ++wait_calls_;
  const int n = wait_events(epfd_, pwait2_, evs, 256, timeout_ns);
  // Phase 1 touches handles only: every one is attached, since detach()
  // removes the entry and no complete() runs until phase 2 (I5).
  for (int i = 0; i < n; ++i) {
    auto* h = static_cast<io_handle*>(evs[i].data.ptr);
    if (h == nullptr) {
      std::uint64_t v;
      // Drains the counter; EAGAIN (another drain won) is fine.
      [[maybe_unused]] const ssize_t r = ::read(wakefd_, &v, sizeof v);
      continue;
    }
    const io_harvest got = ops_.harvest(*h, from_epoll(evs[i].events));
    // Lazy disarm (file comment): a report that completed nothing.
    if (got.matched == 0 && got.still != h->armed) (void)arm(*h, got.still); // ENOMEM: retried at the next report
  }
  return ops_.dispatch();
}

void reactor_epoll::wake() noexcept {
  const std::uint64_t one = 1;
  // EAGAIN only if the counter would overflow 2^64-2: it is readable anyway.
  [[maybe_unused]] const ssize_t r = ::write(wakefd_, &one, sizeof one);
}

} // namespace palitra::detail
