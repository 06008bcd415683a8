// palitra — the scripted reactor (reactor_fake.hpp).
#include <algorithm>
#include <cerrno>
#include <utility>

#include <palitra/config.hpp>

#include "reactor_fake.hpp"

namespace palitra::detail {

reactor_fake::entry* reactor_fake::find(io_handle& h) noexcept {
  auto it = std::find_if(handles_.begin(), handles_.end(), [&](const entry& e) { return e.h == &h; });
  return it == handles_.end() ? nullptr : &*it;
}

std::error_code reactor_fake::attach(io_handle& h, int fd) noexcept {
  ++calls_.attach;
  if (fd < 0) return {EBADF, std::system_category()};
  handles_.push_back({&h, 0}); // tests only: an allocation failure aborts
  ops_.attached(h, fd);
  return {};
}

void reactor_fake::detach(io_handle& h) noexcept {
  ++calls_.detach;
  if (!h.attached) return;
  handles_.erase(handles_.begin() + (find(h) - handles_.data()));
  ops_.detached(h); // I5
}

void reactor_fake::start(io_op& op) noexcept {
  ++calls_.start;
  ops_.started(op);
  if (fail_next_) ops_.failed(op, std::exchange(fail_next_, {}));
}

void reactor_fake::cancel(io_op& op) noexcept {
  ++calls_.cancel;
  ops_.cancel(op);
}

void reactor_fake::set_interest(io_op& watch, std::uint32_t interest) noexcept {
  PALITRA_ASSERT(watch.kind == io_kind::watch, "set_interest on a one-shot op");
  ++calls_.set_interest;
  ops_.set_interest(watch, interest);
}

void reactor_fake::set_ready(io_handle& h, std::uint32_t events) noexcept {
  entry* e = find(h);
  PALITRA_ASSERT(e != nullptr, "reactor_fake::set_ready on a detached handle");
  e->level = events;
}

int reactor_fake::poll(std::int64_t timeout_ns) noexcept {
  PALITRA_ASSERT(!closed_, "reactor_fake::poll after close()");
  ++calls_.poll;
  const bool due = ops_.begin_poll();
  for (entry& e : handles_)
    if (e.level != 0) ops_.harvest(*e.h, e.level);
  // acquire: pairs with wake()'s release, as the eventfd read would.
  const bool woken = woken_.exchange(false, std::memory_order_acquire);
  const int n = ops_.dispatch();
  if (n == 0 && !due && !woken && timeout_ns != 0) {
    ++calls_.sleeps;
    last_sleep_ns_ = timeout_ns;
  }
  return n;
}

void reactor_fake::wake() noexcept {
  // relaxed: a count; the flag's release publishes the waker's writes.
  wakes_.fetch_add(1, std::memory_order_relaxed);
  woken_.store(true, std::memory_order_release);
}

} // namespace palitra::detail
