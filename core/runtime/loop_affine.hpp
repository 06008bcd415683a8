// palitra — the shared core of a loop-affine object (DESIGN.md §2
// "Loop-affine objects": a tcp_stream, a tcp_listener, an http::client): its
// binding to the loop that first uses it, and the references that keep it
// alive while tasks use it, from any thread.
//
// ---------------------------------------------------------------------------
// Protocol: binding (state_).
//   states: unbound -> binding -> bound        (first use on a loop)
//           unbound -> released                (the owner let go first)
//   B1 loop thread, first use (enter): CAS unbound -> binding (acquire),
//      write home_ and anchor_, store bound (release). A use on another
//      loop, or after released, throws palitra::error.
//   B2 any thread, the owner lets go of an object never bound: CAS
//      unbound -> released (acq_rel). From then no loop ever binds it, so
//      its cleanup runs in place, on the releasing thread.
//   B3 any thread that needs home_/anchor_ loads state_ (acquire): bound
//      publishes them (B1's release store); binding means a loop thread is
//      between B1's CAS and its store, a few plain stores with no syscall:
//      it yields until bound.
// Protocol: references (refs_).
//   The owner holds one; so does every task made on the object, from its
//   creation (on any thread) to the destruction of its frame, whether or
//   not it ran.
//   R1 a new reference comes from a live one: fetch_add (relaxed, as
//      shared_ptr: the existing reference keeps the object alive).
//   R2 a reference is dropped with fetch_sub (acq_rel): the last dropper
//      sees every write made under the others and runs the final cleanup:
//      in place if the object was never bound (released or unbound); on the
//      home loop directly if it is that loop's thread; else handed off
//      (loop_anchor.hpp H1, or in place after the loop is gone, H2).
// Invariants:
//   F1 the final cleanup runs exactly once, after every task using the
//      object ended or was destroyed.
//   F2 the hand-off node is in the loop's queue at most once: a hand-off
//      holds a reference until it runs, so no other drop is the last.
// ---------------------------------------------------------------------------
#pragma once

#include <atomic>
#include <cstdint>

#include <palitra/detail/call.hpp>
#include <palitra/detail/loop_hooks.hpp>

#include "runtime/loop_anchor.hpp"

namespace palitra::detail {

class loop;

class loop_affine : public queue_node {
public:
  enum class bind_state : std::uint8_t { unbound, binding, bound, released };
  /// What the final cleanup does: on the home loop (the reactor is there),
  /// or in place (never bound, or the loop is gone: no reactor).
  using cleanup_fn = void (*)(loop_affine&) noexcept;

  loop_affine(const char* kind, cleanup_fn on_loop, cleanup_fn in_place) noexcept
      : kind_(kind), on_loop_(on_loop), in_place_(in_place) {}
  loop_affine(const loop_affine&) = delete;
  loop_affine& operator=(const loop_affine&) = delete;

  /// B1: this thread's loop, binding on first use (the caller then sets
  /// up what lives on the loop: attaches a socket, creates a multi).
  /// Throws palitra::error naming `what` and the kind off a loop, on another
  /// runner's loop, or once released.
  loop& enter(const char* what) {
    loop* l = current_loop();
    // acquire: home_ may only be read once a bound state was seen (B3); on
    // x86 a plain load.
    if (l != nullptr && state_.load(std::memory_order_acquire) == bind_state::bound && home_ == l)
        [[likely]]
      return *l;
    bind(l, what);
    return *l;
  }
  /// B3: the home loop, or nullptr if never bound (or released).
  loop* home() const noexcept;
  /// B2 for the owner's release: true if the object was unbound and is now
  /// released (clean up in place); false if it is bound (hand off).
  bool release_unbound() noexcept;
  bool released() const noexcept {
    // acquire: pairs with B2, for a reader that then cleans up.
    return state_.load(std::memory_order_acquire) == bind_state::released;
  }

  /// R1.
  void ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  /// R2.
  void unref() noexcept;
  /// Runs `fn(*this)` on the home loop: at once on its thread, else handed
  /// off (H1), or in place once the loop is gone (H2, then with
  /// `dead` = true). Takes a reference for the hand-off (F2) and drops it
  /// after `fn`. Only for a bound object.
  void on_home(void (*fn)(loop_affine&, bool dead) noexcept) noexcept;

  const char* kind() const noexcept { return kind_; }

private:
  void bind(loop* l, const char* what);
  void final_cleanup() noexcept;
  static void dispatch_final(queue_node* n, loop& l) noexcept;
  static void in_place_final(queue_node& n) noexcept;
  static void dispatch_home(queue_node* n, loop& l) noexcept;
  static void in_place_home(queue_node& n) noexcept;

  std::atomic<bind_state> state_{bind_state::unbound};
  std::atomic<int> refs_{1};
  loop* home_ = nullptr; // B1 writes, B3 publishes
  anchor_ref anchor_;    // B1 writes, B3 publishes
  const char* kind_;
  cleanup_fn on_loop_;
  cleanup_fn in_place_;
  void (*home_fn_)(loop_affine&, bool) noexcept = nullptr; // on_home's, while handed off
};

/// A task's reference (R1 at creation, R2 at destruction): a coroutine
/// parameter, so the frame holds it from creation whether or not it runs.
class affine_ref {
public:
  explicit affine_ref(loop_affine* a) noexcept : a_(a) {
    if (a_ != nullptr) a_->ref();
  }
  affine_ref(affine_ref&& o) noexcept : a_(o.a_) { o.a_ = nullptr; }
  affine_ref(const affine_ref&) = delete;
  affine_ref& operator=(const affine_ref&) = delete;
  affine_ref& operator=(affine_ref&&) = delete;
  ~affine_ref() {
    if (a_ != nullptr) a_->unref();
  }
  loop_affine* get() const noexcept { return a_; }

private:
  loop_affine* a_;
};

} // namespace palitra::detail
