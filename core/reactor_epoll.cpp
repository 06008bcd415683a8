// palitra — reactor on Linux: epoll + eventfd.
//
// Timers: the loop keeps its own heap and passes the time to the next
// deadline here; epoll_pwait2 takes it with nanosecond precision. On kernels
// without it (ENOSYS, before 5.11) we fall back to epoll_wait, rounding the
// timeout *up* to whole milliseconds so a timer never fires early.
#include <cerrno>
#include <ctime>
#include <system_error>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <palitra/error.hpp>

#include "reactor.hpp"

namespace palitra::detail {
namespace {

std::error_code last_error() noexcept { return {errno, std::system_category()}; }

} // namespace

reactor::reactor() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) throw error("palitra::runner: epoll_create1 failed", last_error());
  wakefd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wakefd_ < 0) {
    const auto ec = last_error();
    ::close(epfd_);
    epfd_ = -1;
    throw error("palitra::runner: eventfd failed", ec);
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wakefd_;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev) != 0) {
    const auto ec = last_error();
    close();
    throw error("palitra::runner: epoll_ctl(eventfd) failed", ec);
  }
}

reactor::~reactor() { close(); }

void reactor::close() noexcept {
  if (wakefd_ >= 0) ::close(wakefd_);
  if (epfd_ >= 0) ::close(epfd_);
  wakefd_ = epfd_ = -1;
}

int reactor::handle_count() const noexcept { return (epfd_ >= 0) + (wakefd_ >= 0); }

void reactor::wait(std::int64_t timeout_ns) noexcept {
  epoll_event evs[16];
  int n;
  if (pwait2_) {
    timespec ts{};
    timespec* tsp = nullptr;
    if (timeout_ns >= 0) {
      ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000);
      tsp = &ts;
    }
    n = epoll_pwait2(epfd_, evs, 16, tsp, nullptr);
    if (n < 0 && errno == ENOSYS) {
      pwait2_ = false;
      return; // the loop goes round and waits again through epoll_wait
    }
  } else {
    int ms = -1;
    if (timeout_ns >= 0) {
      const std::int64_t up = (timeout_ns + 999'999) / 1'000'000; // never early
      ms = up > 1'000'000'000 ? 1'000'000'000 : static_cast<int>(up);
    }
    n = epoll_wait(epfd_, evs, 16, ms);
  }
  for (int i = 0; i < n; ++i) {
    if (evs[i].data.fd == wakefd_) {
      std::uint64_t v;
      // Drains the counter; EAGAIN (another drain won) is fine.
      [[maybe_unused]] const ssize_t r = ::read(wakefd_, &v, sizeof v);
    }
  }
}

void reactor::wake() noexcept {
  const std::uint64_t one = 1;
  // EAGAIN only if the counter would overflow 2^64-2: it is readable anyway.
  [[maybe_unused]] const ssize_t r = ::write(wakefd_, &one, sizeof one);
}

} // namespace palitra::detail
