// palitra — sync_core: the W1-W5 steps shared by every loop-local primitive.
// The protocol block is in include/palitra/detail/waiter_list.hpp.
#include <string>

#include <palitra/config.hpp>
#include <palitra/detail/waiter_list.hpp>
#include <palitra/error.hpp>

namespace palitra::detail {

loop& sync_core::bind(loop* l, const char* what) {
  if (l == nullptr)
    throw error(std::string(what) + ": called off the loop (not on a palitra loop thread); a " +
                kind_ + " belongs to the loop that first used it: call it from a task run on "
                "that runner, or from runner::post");
  if (loop_ != nullptr)
    throw error(std::string(what) + ": used on another runner's loop; a " + kind_ +
                " belongs to the loop that first used it: use it only from tasks of that "
                "runner, or give each runner its own " + kind_);
  loop_ = l; // first use binds (I6)
  return *l;
}

void sync_core::suspend(waiter_list& q, sync_waiter& w, std::coroutine_handle<> h) noexcept {
  w.home = loop_;
  w.item.handle = h;
  w.state = wait_state::queued;
  q.push_back(w);
  if (w.item.chain != nullptr) w.item.chain->arm(&on_cancel, &w); // T3, keeps I1
}

void sync_core::on_cancel(void* ctx) noexcept {
  // W3: deliver() already cleared the hook; only a queued waiter is hooked.
  auto& w = *static_cast<sync_waiter*>(ctx);
  w.list->erase(w);
  w.state = wait_state::cancelled;
  schedule(*w.home, w.item); // I5
}

bool sync_core::wake_front(waiter_list& q, wait_state to) noexcept {
  while (sync_waiter* w = q.front()) {
    q.erase(*w);
    if (w->item.chain != nullptr) w->item.chain->disarm(); // T3: completes by its own means
    if (to == wait_state::granted && w->item.chain != nullptr && w->item.chain->cancelled()) {
      // W2: requested but not yet delivered; the grant goes to the next one.
      w->state = wait_state::cancelled;
      schedule(*loop_, w->item);
      continue;
    }
    w->state = to;
    woken_.push_back(*w); // keeps I1
    schedule(*loop_, w->item); // I5; FIFO with the grant order (I3)
    return true;
  }
  return false;
}

void sync_core::wake_all(waiter_list& q, wait_state to) noexcept {
  while (wake_front(q, to)) {
  }
}

void sync_core::abandon(waiter_list& q) noexcept {
  if (q.empty()) return;
  PALITRA_ASSERT(current_loop() == loop_,
                 "a palitra event/mutex/semaphore/channel was destroyed off its loop while tasks "
                 "waited on it; keep it alive until every waiter is done");
  // Woken waiters are already scheduled (I1): only their state changes.
  const bool queued = &q != &woken_;
  while (sync_waiter* w = q.front()) {
    q.erase(*w);
    w->state = wait_state::abandoned;
    if (!queued) continue;
    if (w->item.chain != nullptr) w->item.chain->disarm(); // its hook was armed
    schedule(*w->home, w->item);
  }
}

sync_core::~sync_core() {
  abandon(queue_);
  abandon(woken_);
}

void sync_core::throw_abandoned(const char* what) {
  throw error(std::string(what) +
              ": the object was destroyed while this task waited on it; keep it alive until "
              "every waiter is done");
}

} // namespace palitra::detail
