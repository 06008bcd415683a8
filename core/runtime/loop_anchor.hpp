// palitra — a loop's anchor: how a loop-affine object destroyed on another
// thread hands its cleanup to its loop (DESIGN.md §2, "Loop-affine objects").
//
// An object bound to a loop (a socket, later an http::client or a pg::pool)
// keeps a counted reference to the anchor, never to the loop itself: the
// anchor outlives the runner, so a destructor running after close(), in a
// static during exit, or racing close() on another thread always has
// something valid to ask.
//
// ---------------------------------------------------------------------------
// Protocol: the cleanup hand-off (m_ guards gone_; every step named here).
//   states of gone_: false (the loop will drain its queue again)
//                    -> true (it never will), set once, by the loop thread.
//   H1 any thread but the loop's: lock m_; if !gone_, push the object's
//      cleanup node with submit_always (a counted producer, G1', so its
//      wake-fd write cannot race the loop thread's exit, submission.hpp I2);
//      unlock. The loop runs the cleanup when it pops the node.
//   H2 the same, but gone_ is true: unlock and run the cleanup in place. No
//      poll() runs any more, so no event can reach the object's handle;
//      closing the fd also takes it out of the kernel's epoll set.
//   H0 loop thread, after the final drain (loop.cpp, stopped -> exited),
//      before H3: every resident still registered (an object alive past its
//      loop that holds timers or reactor handles: an http::client) gets
//      on_loop_exit(): it gives its timers and watches back and from then
//      on cleans up without the loop ("dead" mode).
//   H3 loop thread, right after H0: lock m_; gone_ = true; unlock; then
//      drain the queue once more (cleanups handed off between H0 and H3
//      run here, in dead mode).
// Invariants:
//   A1 every cleanup runs exactly once: pushed before H3's lock (then the
//      drain after it pops the node: the push completed under m_), or run
//      in place after it.
//   A2 H1 never blocks on the loop: m_ is held only for a push or a store.
//   A3 dead mode is set on the loop thread before gone_ (H0 before H3), so
//      an in-place cleanup (H2, after reading gone_ under m_) or a handed-off
//      one (the drain after H3) always sees it.
// ---------------------------------------------------------------------------
#pragma once

#include <memory>
#include <mutex>

#include <palitra/detail/call.hpp>

namespace palitra::detail {

class loop;

class loop_anchor {
public:
  explicit loop_anchor(loop& l) noexcept : loop_(&l) {}

  /// H1/H2, any thread off the loop. `node.dispatch` performs the cleanup on
  /// the loop; `in_place(node)` performs it here once the loop is gone.
  void hand_off(queue_node& node, void (*in_place)(queue_node&) noexcept) noexcept;

  /// H3, loop thread, once.
  void mark_gone() noexcept {
    std::lock_guard lk(m_);
    gone_ = true;
  }

private:
  std::mutex m_;
  loop* loop_;
  bool gone_ = false; // guarded by m_
};

using anchor_ref = std::shared_ptr<loop_anchor>;

/// H0's registry entry (loop::add_resident). Intrusive; loop thread only.
struct loop_resident {
  loop_resident* prev = nullptr;
  loop_resident* next = nullptr;
  bool registered = false;
  void* ctx = nullptr; ///< the owner's
  /// The loop is exiting and the object is still alive (H0).
  void (*on_loop_exit)(loop_resident&) noexcept = nullptr;
};

} // namespace palitra::detail
