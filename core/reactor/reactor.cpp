// palitra — the backend-independent half of the reactor (reactor.hpp):
// op lists and the two-phase dispatch every backend shares.
#include <palitra/config.hpp>

#include "reactor.hpp"

namespace palitra::detail {

void io_op_list::push_back(io_op& op) noexcept {
  op.next_ = nullptr;
  op.prev_ = tail;
  (tail != nullptr ? tail->next_ : head) = &op;
  tail = &op;
}

void io_op_list::erase(io_op& op) noexcept {
  (op.prev_ != nullptr ? op.prev_->next_ : head) = op.next_;
  (op.next_ != nullptr ? op.next_->prev_ : tail) = op.prev_;
  op.next_ = op.prev_ = nullptr;
}

io_op* io_op_list::pop_front() noexcept {
  io_op* op = head;
  if (op != nullptr) erase(*op);
  return op;
}

void io_ops::attached(io_handle& h, int fd) noexcept {
  PALITRA_ASSERT(!h.attached, "io_handle attached twice");
  h.fd = fd;
  h.attached = true;
  h.armed = 0;
  ++handles_;
}

void io_ops::detached(io_handle& h) noexcept {
  while (io_op* op = h.ops.head) cancel(*op);
  // Readiness already harvested for this handle in the current batch must
  // not complete as ready: the fd may be closed and its number reused by
  // the time phase 2 reaches it (keeps I5).
  for (io_op* op = batch_.head; op != nullptr;) {
    io_op* next = op->next_;
    if (op->handle == &h) cancel(*op);
    op = next;
  }
  h.fd = -1;
  h.attached = false;
  h.armed = 0;
  --handles_;
}

void io_ops::started(io_op& op) noexcept {
  PALITRA_ASSERT(op.state == io_op_state::idle || op.state == io_op_state::completed,
                 "io_op started while in flight (I1)");
  PALITRA_ASSERT(op.handle != nullptr && op.handle->attached, "io_op on a detached handle");
  PALITRA_ASSERT(op.complete != nullptr, "io_op without a completion");
  op.state = io_op_state::pending;
  op.error = {};
  op.events = 0;
  op.handle->ops.push_back(op);
  ++pending_;
  if (is_quiet(op)) ++quiet_;
}

void io_ops::set_interest(io_op& watch, std::uint32_t interest) noexcept {
  const bool in_flight = watch.state == io_op_state::pending || watch.state == io_op_state::ready;
  if (in_flight && is_quiet(watch)) --quiet_;
  watch.interest = interest;
  if (in_flight && is_quiet(watch)) ++quiet_;
}

void io_ops::failed(io_op& op, std::error_code ec) noexcept {
  PALITRA_ASSERT(op.state == io_op_state::pending, "only a pending op can fail to start");
  op.handle->ops.erase(op);
  if (is_quiet(op)) --quiet_;
  op.state = io_op_state::cancelling;
  op.error = ec;
  due_.push_back(op); // I2: completes in a later poll, never inline
}

bool io_ops::cancel(io_op& op) noexcept {
  switch (op.state) {
  case io_op_state::pending: op.handle->ops.erase(op); break;
  case io_op_state::ready: batch_.erase(op); break; // I4: harvested, still cancelled
  default: return false; // idle, cancelling, completed: nothing to do (I4)
  }
  if (is_quiet(op)) --quiet_; // it completes now: active again
  op.state = io_op_state::cancelling;
  op.error = std::make_error_code(std::errc::operation_canceled);
  op.events = 0;
  due_.push_back(op); // I6: the next poll, not the one dispatching now
  return true;
}

void io_ops::forget(io_op& op) noexcept {
  if ((op.state == io_op_state::pending || op.state == io_op_state::ready) && is_quiet(op)) --quiet_;
  switch (op.state) {
  case io_op_state::pending: op.handle->ops.erase(op); break;
  case io_op_state::ready: batch_.erase(op); break;
  case io_op_state::cancelling: {
    // In due_ or, while a poll dispatches, in dispatching_: the state does
    // not say which, so look (a rare path: a frame destroyed mid-wait).
    bool in_due = false;
    for (io_op* o = due_.head; o != nullptr && !in_due; o = o->next_) in_due = o == &op;
    (in_due ? due_ : dispatching_).erase(op);
    break;
  }
  default: return; // idle or completed: not the reactor's
  }
  --pending_;
  op.state = io_op_state::idle;
  op.events = 0;
}

io_harvest io_ops::harvest(io_handle& h, std::uint32_t events) noexcept {
  io_harvest got;
  for (io_op* op = h.ops.head; op != nullptr;) {
    io_op* next = op->next_;
    const std::uint32_t w = op->wants();
    // A watch with no interest waits for nothing, not even an error: its
    // owner has said it does not service the fd now (I7).
    if (w != 0 && (events & (w | io_err | io_hup)) != 0) {
      h.ops.erase(*op);
      op->state = io_op_state::ready;
      op->events = events;
      batch_.push_back(*op);
      ++got.matched;
      if (op->kind == io_kind::watch) got.still |= w; // phase 2 relinks it
    } else {
      got.still |= w;
    }
    op = next;
  }
  return got;
}

bool io_ops::begin_poll() noexcept {
  PALITRA_ASSERT(dispatching_.empty() && batch_.empty(), "reactor poll() re-entered from complete()");
  dispatching_ = due_;
  due_ = {};
  return !dispatching_.empty();
}

int io_ops::dispatch() noexcept {
  int n = 0;
  while (io_op* op = dispatching_.pop_front()) {
    op->state = io_op_state::completed;
    --pending_;
    ++n;
    op->complete(*op); // the op is the owner's from here (I1)
  }
  while (io_op* op = batch_.pop_front()) {
    if (op->kind == io_kind::watch) {
      // A report: back on its handle, which is still attached (a detach
      // would have taken the op out of the batch, I5).
      op->state = io_op_state::pending;
      op->handle->ops.push_back(*op);
    } else {
      op->state = io_op_state::completed;
      --pending_;
    }
    ++n;
    op->complete(*op);
  }
  return n;
}

std::uint32_t io_ops::wanted(const io_handle& h) noexcept {
  std::uint32_t w = 0;
  for (const io_op* op = h.ops.head; op != nullptr; op = op->next_) w |= op->wants();
  return w;
}

} // namespace palitra::detail
