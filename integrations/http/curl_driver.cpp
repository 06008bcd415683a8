// palitra::http — curl's multi handle driven by the loop (curl_driver.hpp,
// rules R1-R6).
#include <cerrno>
#include <chrono>

#include <sys/socket.h>
#include <unistd.h>

#include <palitra/config.hpp>
#include <palitra/error.hpp>

#include "curl_driver.hpp"

namespace palitra::http::detail {

using palitra::detail::io_handle;
using palitra::detail::io_in;
using palitra::detail::io_kind;
using palitra::detail::io_op;
using palitra::detail::io_op_state;
using palitra::detail::io_out;

/// One fd curl uses: its reactor handle and its persistent watch.
struct curl_driver::sock {
  curl_driver* owner;
  curl_socket_t fd;
  bool ours;             ///< opened by on_open (we close it in on_close)
  bool attached = false; ///< registered with the reactor
  io_handle h;
  io_op watch;
};

curl_driver::curl_driver(palitra::detail::loop& l, long max_total, long max_per_host)
    : loop_(&l) {
  multi_ = curl_multi_init();
  if (multi_ == nullptr) throw palitra::error("palitra::http::client: curl_multi_init failed");
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &on_timer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_total);
  curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, max_per_host);
  // The cache keeps what the limits allow, so a burst's connections are
  // kept for the next one instead of closed (curl's default: 4 x handles).
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, max_total);
  timer_.fire = &on_timer_fired;
  timer_.ctx = this;
}

curl_driver::~curl_driver() {
  // Closes the cached connections through on_close (on the loop: each
  // leaves the reactor first; dead: just closed).
  curl_multi_cleanup(multi_);
  if (loop_ != nullptr && timer_.armed()) loop_->remove_timer(timer_);
  for (auto& [fd, s] : socks_) { // fds curl opened itself and never removed
    if (loop_ != nullptr && s->attached) {
      loop_->io().forget(s->watch);
      loop_->io().detach(s->h);
    }
  }
}

void curl_driver::adopt(CURL* easy) noexcept {
  curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, &on_open);
  curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, this);
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, &on_close);
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, this);
}

void curl_driver::add(transfer_base& t) {
  curl_easy_setopt(t.easy, CURLOPT_PRIVATE, &t);
  // Arms a timer of 0 through on_timer (R2): the transfer starts on the
  // next pass.
  if (const CURLMcode rc = curl_multi_add_handle(multi_, t.easy); rc != CURLM_OK)
    throw palitra::error(std::string("palitra::http::client: curl_multi_add_handle failed: ") +
                         curl_multi_strerror(rc));
}

void curl_driver::remove(transfer_base& t) noexcept {
  // Mid-transfer, curl closes the connection rather than caching it.
  curl_multi_remove_handle(multi_, t.easy);
}

void curl_driver::leave_loop() noexcept {
  if (loop_ == nullptr) return;
  if (timer_.armed()) loop_->remove_timer(timer_);
  for (auto& [fd, s] : socks_) {
    if (!s->attached) continue;
    loop_->io().forget(s->watch); // reactor I9: the op's owner outlives the loop
    loop_->io().detach(s->h);     // the fd stays open: curl still owns it
    s->attached = false;
  }
  loop_ = nullptr;
}

// ---- curl's callbacks: they only record (R1) ---------------------------------

curl_driver::sock* curl_driver::track(curl_socket_t s, bool ours) noexcept {
  auto it = socks_.find(s);
  if (it != socks_.end()) return it->second.get();
  sock* k;
  try {
    k = socks_.emplace(s, std::make_unique<sock>(sock{this, s, ours, false, {}, {}}))
            .first->second.get();
  } catch (...) {
    return nullptr; // no memory: curl sees the failure (see callers)
  }
  if (loop_ == nullptr) return k;
  if (loop_->io().attach(k->h, s)) return k; // refused: stays unwatched; curl times out
  k->attached = true;
  k->watch.kind = io_kind::watch;
  k->watch.handle = &k->h;
  k->watch.interest = 0; // R5: nothing until curl asks
  k->watch.complete = &on_watch;
  k->watch.ctx = k;
  loop_->io().start(k->watch);
  return k;
}

void curl_driver::forget(curl_socket_t s) noexcept {
  auto it = socks_.find(s);
  if (it == socks_.end()) return; // R4: unknown or already gone
  sock& k = *it->second;
  if (k.attached && loop_ != nullptr) {
    loop_->io().forget(k.watch); // may be inside its own report: I9 allows it
    loop_->io().detach(k.h);     // I5: before the fd is closed
  }
  socks_.erase(it);
}

int curl_driver::on_socket(CURL*, curl_socket_t s, int what, void* self, void*) noexcept {
  auto* d = static_cast<curl_driver*>(self);
  if (what == CURL_POLL_REMOVE) {
    auto it = d->socks_.find(s);
    if (it == d->socks_.end()) return 0; // R4
    if (!it->second->ours) {
      d->forget(s); // R3: curl closes this one itself, soon
    } else if (it->second->attached && d->loop_ != nullptr) {
      d->loop_->io().set_interest(it->second->watch, 0); // parked: R5
    }
    return 0;
  }
  sock* k = d->track(s, /*ours=*/false); // ours were tracked by on_open
  if (k == nullptr) return -1;           // out of memory: curl fails the transfers
  if (!k->attached || d->loop_ == nullptr) return 0;
  const std::uint32_t want = (what & CURL_POLL_IN ? io_in : 0) | (what & CURL_POLL_OUT ? io_out : 0);
  d->loop_->io().set_interest(k->watch, want);
  return 0;
}

int curl_driver::on_timer(CURLM*, long timeout_ms, void* self) noexcept {
  auto* d = static_cast<curl_driver*>(self);
  if (d->loop_ == nullptr) return 0;
  if (d->timer_.armed()) d->loop_->remove_timer(d->timer_);
  if (timeout_ms < 0) return 0; // -1: no timeout
  // R2: 0 is "on the next pass" (a deadline just after this pass's clock
  // reading, so fire_timers does not run it again now), or 1 ms when asked
  // from inside the timeout action itself.
  std::chrono::nanoseconds after = std::chrono::milliseconds(timeout_ms);
  if (timeout_ms == 0) after = d->in_timeout_action_ ? std::chrono::milliseconds(1) : std::chrono::nanoseconds(1);
  d->timer_.deadline = std::chrono::steady_clock::now() + after;
  try {
    d->loop_->add_timer(d->timer_);
  } catch (...) {
    return -1; // no memory for the heap: curl aborts the transfers
  }
  return 0;
}

curl_socket_t curl_driver::on_open(void* self, curlsocktype, curl_sockaddr* a) noexcept {
  auto* d = static_cast<curl_driver*>(self);
  const int fd = ::socket(a->family, a->socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->protocol);
  if (fd < 0) return CURL_SOCKET_BAD;
  // An entry under this number is stale: an fd curl opened itself and
  // closed without a REMOVE (curl #16026). Its registration goes first.
  d->forget(fd);
  if (d->track(fd, /*ours=*/true) == nullptr) {
    ::close(fd);
    return CURL_SOCKET_BAD;
  }
  return fd;
}

int curl_driver::on_close(void* self, curl_socket_t s) noexcept {
  static_cast<curl_driver*>(self)->forget(s); // R3: out of the reactor first
  return ::close(s);
}

// ---- the loop calls curl (R1) ------------------------------------------------

void curl_driver::on_watch(io_op& op) noexcept {
  auto* k = static_cast<sock*>(op.ctx);
  if (op.done()) return; // cancelled: only forget() ends a watch, and it never completes
  int mask = 0;
  if ((op.events & io_in) != 0) mask |= CURL_CSELECT_IN;
  if ((op.events & io_out) != 0) mask |= CURL_CSELECT_OUT;
  if ((op.events & (palitra::detail::io_err | palitra::detail::io_hup)) != 0) mask |= CURL_CSELECT_ERR;
  // `k` may be freed inside this call (curl closes the socket): copy first.
  curl_driver* d = k->owner;
  const curl_socket_t fd = k->fd;
  d->action(fd, mask);
}

void curl_driver::on_timer_fired(void* self) noexcept {
  auto* d = static_cast<curl_driver*>(self);
  d->in_timeout_action_ = true;
  d->action(CURL_SOCKET_TIMEOUT, 0);
  d->in_timeout_action_ = false;
}

void curl_driver::action(curl_socket_t s, int mask) noexcept {
  int running = 0;
  curl_multi_socket_action(multi_, s, mask, &running);
  drain_done();
}

void curl_driver::drain_done() noexcept {
  int left = 0;
  while (CURLMsg* m = curl_multi_info_read(multi_, &left)) {
    if (m->msg != CURLMSG_DONE) continue;
    CURL* easy = m->easy_handle;
    const CURLcode result = m->data.result;
    transfer_base* t = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
    curl_multi_remove_handle(multi_, easy); // finished: its connection is cached
    if (t != nullptr) t->done(result);      // R6: schedules, never resumes
  }
}

} // namespace palitra::http::detail
