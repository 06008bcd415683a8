// palitra — loop-affine objects: binding and references (loop_affine.hpp,
// B1-B3, R1-R2, F1-F2).
#include <string>

#include <palitra/config.hpp>
#include <palitra/error.hpp>

#include "platform/platform.hpp"
#include "runtime/loop.hpp"
#include "runtime/loop_affine.hpp"

namespace palitra::detail {

void loop_affine::bind(loop* l, const char* what) {
  if (l == nullptr)
    throw error(std::string(what) + ": not on a palitra loop thread; co_await it inside a task "
                                    "run by a runner");
  for (;;) {
    // acquire: a bound state publishes home_ (B3).
    bind_state s = state_.load(std::memory_order_acquire);
    switch (s) {
    case bind_state::bound:
      if (home_ == l) return;
      throw error(std::string(what) + ": this " + kind_ +
                  " belongs to another runner's loop (the one that first used it); use it there");
    case bind_state::released:
      throw error(std::string(what) + ": the " + kind_ + " is closed");
    case bind_state::binding:
      platform::yield_cpu(); // B3: another loop is between B1's two steps
      continue;
    case bind_state::unbound:
      // acquire: nothing to see yet, but keeps B1 ordered after any B2
      // attempt that lost; relaxed on failure, the loop re-reads.
      if (!state_.compare_exchange_strong(s, bind_state::binding, std::memory_order_acquire,
                                          std::memory_order_relaxed))
        continue;
      home_ = l;
      anchor_ = l->anchor();
      // release: publishes home_ and anchor_ to B3 readers.
      state_.store(bind_state::bound, std::memory_order_release);
      return;
    }
  }
}

loop* loop_affine::home() const noexcept {
  for (;;) {
    // acquire: see bind().
    const bind_state s = state_.load(std::memory_order_acquire);
    if (s == bind_state::bound) return home_;
    if (s != bind_state::binding) return nullptr;
    platform::yield_cpu(); // B3
  }
}

bool loop_affine::release_unbound() noexcept {
  bind_state s = bind_state::unbound;
  // acq_rel: B2 against B1's CAS; whichever wins decides where the cleanup runs.
  if (state_.compare_exchange_strong(s, bind_state::released, std::memory_order_acq_rel,
                                     std::memory_order_acquire))
    return true;
  if (s == bind_state::released) return true;
  return home() == nullptr; // waits out `binding` (B3); bound: false
}

void loop_affine::unref() noexcept {
  // acq_rel: R2, the last dropper sees every write made under the others.
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) final_cleanup();
}

void loop_affine::final_cleanup() noexcept {
  loop* h = home();
  if (h == nullptr) { // never bound, or released: nothing is on any loop
    in_place_(*this);
    return;
  }
  if (current_loop() == h) {
    on_loop_(*this);
    return;
  }
  dispatch = &dispatch_final;
  anchor_ref a = anchor_; // `this` may be gone once handed off
  a->hand_off(*this, &in_place_final);
}

void loop_affine::dispatch_final(queue_node* n, loop&) noexcept {
  auto* a = static_cast<loop_affine*>(n);
  a->on_loop_(*a); // H1
}

void loop_affine::in_place_final(queue_node& n) noexcept {
  auto& a = static_cast<loop_affine&>(n);
  a.in_place_(a); // H2
}

void loop_affine::on_home(void (*fn)(loop_affine&, bool dead) noexcept) noexcept {
  loop* h = home();
  PALITRA_ASSERT(h != nullptr, "loop_affine::on_home on an unbound object");
  ref(); // F2: the hand-off holds a reference until fn ran
  if (current_loop() == h) {
    fn(*this, false);
    unref();
    return;
  }
  home_fn_ = fn;
  dispatch = &dispatch_home;
  anchor_ref a = anchor_;
  a->hand_off(*this, &in_place_home);
}

void loop_affine::dispatch_home(queue_node* n, loop&) noexcept {
  auto* a = static_cast<loop_affine*>(n);
  a->home_fn_(*a, false);
  a->unref();
}

void loop_affine::in_place_home(queue_node& n) noexcept {
  auto& a = static_cast<loop_affine&>(n);
  a.home_fn_(a, true);
  a.unref();
}

} // namespace palitra::detail
