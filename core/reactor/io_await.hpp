// palitra — the awaiter of one readiness wait on the loop's reactor: what
// read_some, write_all, accept, connect and wait_readable suspend on.
//
//   suspend  the chain is already cancelled -> no suspension, cancelled_error;
//            else start a one-shot op on the handle and arm the chain's hook.
//   complete (reactor poll, I2) ready, errored or cancelled: disarm the hook,
//            schedule the resume (never inline: poll() is mid-dispatch).
//   cancel   (the chain's hook, cancel.hpp T2) cancel the op; its ECANCELED
//            completion comes in the next poll (reactor I6) and resumes us.
//   resume   cancelled -> cancelled_error; detached under us (the object was
//            closed while we waited) -> result closed; otherwise the caller
//            retries its syscall, which reports any error (reactor I7).
//   destroyed while suspended (a frame destroyed mid-wait): forget() the op
//            (reactor I9) and disarm the hook, so nothing points here.
// Loop thread only.
#pragma once

#include <coroutine>

#include <palitra/detail/cancel.hpp>
#include <palitra/task.hpp>

#include "runtime/loop.hpp"

namespace palitra::detail {

enum class io_wait_result : unsigned char { ready, closed };

class io_awaiter {
public:
  io_awaiter(loop& l, io_handle& h, io_kind kind, const char* what) noexcept
      : loop_(l), what_(what) {
    op_.kind = kind;
    op_.handle = &h;
    op_.complete = &on_complete;
    op_.ctx = this;
  }
  io_awaiter(const io_awaiter&) = delete;
  io_awaiter& operator=(const io_awaiter&) = delete;
  ~io_awaiter() {
    if (op_.state != io_op_state::idle && op_.state != io_op_state::completed) loop_.io().forget(op_);
    if (hooked_) item_.chain->disarm();
  }

  bool await_ready() const noexcept { return false; }

  template <class P> bool await_suspend(std::coroutine_handle<P> h) noexcept {
    item_.chain = chain_of(h);
    if (item_.chain != nullptr && item_.chain->cancelled()) return false; // throws in resume
    item_.handle = h;
    loop_.io().start(op_);
    if (item_.chain != nullptr) {
      item_.chain->arm(&on_cancel, this);
      hooked_ = true;
    }
    return true;
  }

  io_wait_result await_resume() const {
    if (item_.chain != nullptr && item_.chain->cancelled()) throw_cancelled(what_);
    // ECANCELED without a cancelled chain: a detach (the object was closed).
    if (op_.cancelled()) return io_wait_result::closed;
    return io_wait_result::ready;
  }

private:
  static void on_complete(io_op& op) noexcept {
    auto* self = static_cast<io_awaiter*>(op.ctx);
    if (self->hooked_) {
      self->item_.chain->disarm();
      self->hooked_ = false;
    }
    self->loop_.schedule(self->item_);
  }
  static void on_cancel(void* ctx) noexcept {
    auto* self = static_cast<io_awaiter*>(ctx);
    self->hooked_ = false; // deliver() cleared the hook
    self->loop_.io().cancel(self->op_);
  }

  loop& loop_;
  const char* what_;
  io_op op_;
  ready_item item_;
  bool hooked_ = false;
};

} // namespace palitra::detail
