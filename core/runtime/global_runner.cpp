// palitra — the process-wide runner.
//
// Lifecycle:
//   absent --first use--> alive --shutdown/close--> closed --next use--> alive'
//   any --atexit handler--> exiting (final: uses throw runner_closed_error)
//   any --fork(), in the child--> the inherited runner reports closed (fork
//        generation), so the next use creates a new one.
// Runners are never deleted: a reference from global_runner() must stay
// valid for the whole process (DESIGN.md §2), and no static destructor may
// touch one (§4: static-destruction order must not matter). A closed runner
// holds no thread and no fd, only its memory.
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#include <palitra/error.hpp>
#include <palitra/run.hpp>

#include "platform/platform.hpp"

namespace palitra {
namespace {

struct global_state {
  std::mutex mutex; // creation and exit only; run() reads `current` lock-free
  std::atomic<runner*> current{nullptr};
  bool exiting = false;           // guarded by mutex
  bool atexit_registered = false; // guarded by mutex
  std::vector<runner*> retired;   // guarded by mutex; reachable for LSan
};

// Constant-initialised (no allocation, no init-order question: a run() from
// another translation unit's static initialiser finds it ready) and never
// destroyed (see the file comment): the union keeps its destructor from
// running at exit.
union never_destroyed {
  global_state value;
  constexpr never_destroyed() : value() {}
  ~never_destroyed() {}
};
constinit never_destroyed g_state;

global_state& state() noexcept { return g_state.value; }

void reinit_after_fork() noexcept {
  // The child is single-threaded; a parent thread may have held the mutex at
  // fork() time and will never release it here, or may have been inside
  // retired.push_back: start both afresh (the old vector's memory leaks,
  // and the runners it listed are inherited ones, closed in the child).
  new (&state().mutex) std::mutex;
  new (&state().retired) std::vector<runner*>;
}

void at_exit() noexcept {
  global_state& g = state();
  runner* r;
  {
    std::lock_guard<std::mutex> lk(g.mutex);
    g.exiting = true;
    r = g.current.load(std::memory_order_relaxed); // under the mutex
  }
  if (r == nullptr || r->closed()) return;
  if (r->on_loop_thread()) {
    // exit() from inside a coroutine: the loop thread cannot join itself.
    detail::runner_internals::abandon(*r);
    return;
  }
  try {
    r->close();
  } catch (...) {
    // close() throws only on the loop thread, handled above.
  }
}

runner& create_slow() {
  global_state& g = state();
  std::lock_guard<std::mutex> lk(g.mutex);
  if (g.exiting)
    throw runner_closed_error("palitra::run: the process is exiting and the global runner is "
                              "closed; it is not recreated during exit");
  runner* r = g.current.load(std::memory_order_relaxed); // under the mutex
  if (r != nullptr && !r->closed()) return *r;
  if (!g.atexit_registered) {
    static const bool fork_hook = [] {
      detail::platform::on_fork_child(&reinit_after_fork);
      return true;
    }();
    (void)fork_hook;
    std::atexit(&at_exit);
    g.atexit_registered = true;
  }
  if (r != nullptr) g.retired.push_back(r);
  runner_options o;
  o.name = "palitra-global";
  auto* fresh = new runner(o);
  // release: pairs with the acquire load in global_runner().
  g.current.store(fresh, std::memory_order_release);
  return *fresh;
}

} // namespace

runner& global_runner() {
  // acquire: pairs with create_slow's release store (the runner is built).
  runner* r = state().current.load(std::memory_order_acquire);
  if (r != nullptr && !r->closed()) [[likely]]
    return *r;
  return create_slow();
}

bool is_runner_alive() noexcept {
  runner* r = state().current.load(std::memory_order_acquire); // as global_runner()
  return r != nullptr && !r->closed();
}

void shutdown_global_runner() {
  runner* r = state().current.load(std::memory_order_acquire); // as global_runner()
  if (r != nullptr) r->close();
}

void shutdown_global_runner(std::chrono::nanoseconds grace) {
  runner* r = state().current.load(std::memory_order_acquire); // as global_runner()
  if (r != nullptr) r->close(grace);
}

} // namespace palitra
