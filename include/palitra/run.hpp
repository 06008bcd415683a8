// palitra — the global runner and the free functions that use it
// (Python palitra's module-level run / gather / shutdown_global_runner).
#pragma once

#include <chrono>
#include <utility>
#include <vector>

#include <palitra/runner.hpp>

namespace palitra {

/// The process-wide runner, created on first use (thread-safe). If the
/// current one was closed, a new one is created — except during exit
/// (after the atexit handler ran), when runner_closed_error is thrown.
/// Lifetime: the reference stays valid for the whole process; after
/// shutdown_global_runner() it refers to a closed runner.
runner& global_runner();

/// True if the global runner exists and is not closed (false in a forked
/// child until the next use). Never creates one.
bool is_runner_alive() noexcept;

/// Close the global runner (see runner::close); the next run() creates a new
/// one. Idempotent, thread-safe. Throws: reentrancy_error on its loop thread.
void shutdown_global_runner();

/// As shutdown_global_runner(), gracefully (runner::close(grace)): the
/// global runner's calls and spawned tasks get up to `grace` to finish.
void shutdown_global_runner(std::chrono::nanoseconds grace);

/// Closes the global runner when `main` leaves its scope (tokio's
/// `#[tokio::main]`). Without it the runner is closed by an atexit handler
/// registered at its first use; function-local statics built after that
/// (a logger or cache first touched by a coroutine) are destroyed *before*
/// that handler runs, while spawned tasks may still use them. Declare one at
/// the top of `main`: the runner is then closed, its spawned tasks cancelled
/// and awaited, before `main` returns and any static is destroyed.
/// Thread: the thread that runs `main`. Blocks: the destructor, until the
/// runner is closed (runner::close). Not copyable or movable.
class runtime_guard {
public:
  runtime_guard() noexcept = default;
  ~runtime_guard() {
    try {
      shutdown_global_runner();
    } catch (...) {
      // Only reentrancy_error (a guard destroyed on the loop thread): the
      // atexit handler still closes the runner.
    }
  }
  runtime_guard(const runtime_guard&) = delete;
  runtime_guard& operator=(const runtime_guard&) = delete;
};

/// runner::run on the global runner.
template <class T> T run(task<T> t) { return global_runner().run(std::move(t)); }
template <class T, class Rep, class Period>
T run(task<T> t, std::chrono::duration<Rep, Period> timeout) {
  return global_runner().run(std::move(t), timeout);
}
template <class F, class... Args>
  requires detail::task_factory<F, Args...>
auto run(F&& f, Args&&... args) {
  return global_runner().run(std::forward<F>(f), std::forward<Args>(args)...);
}

/// runner::start on the global runner.
template <class V = detail::deduce_started, class F>
  requires detail::start_factory<F, detail::start_value_t<V, F>>
auto start(F&& f) {
  return global_runner().template start<V>(std::forward<F>(f));
}
template <class V = detail::deduce_started, class F, class Rep, class Period>
  requires detail::start_factory<F, detail::start_value_t<V, F>>
auto start(F&& f, std::chrono::duration<Rep, Period> timeout) {
  return global_runner().template start<V>(std::forward<F>(f), timeout);
}

/// runner::gather on the global runner.
template <class... A>
  requires detail::gather_args<A...>
auto gather(A&&... args) {
  return global_runner().gather(std::forward<A>(args)...);
}
template <class T> std::vector<detail::result_t<T>> gather(std::vector<task<T>> ts) {
  return global_runner().gather(std::move(ts));
}
template <class T, class Rep, class Period>
std::vector<detail::result_t<T>> gather(std::vector<task<T>> ts,
                                        std::chrono::duration<Rep, Period> timeout) {
  return global_runner().gather(std::move(ts), timeout);
}

/// runner::gather_settled on the global runner.
template <class T> std::vector<outcome<T>> gather_settled(std::vector<task<T>> ts) {
  return global_runner().gather_settled(std::move(ts));
}
template <class T, class Rep, class Period>
std::vector<outcome<T>> gather_settled(std::vector<task<T>> ts,
                                       std::chrono::duration<Rep, Period> timeout) {
  return global_runner().gather_settled(std::move(ts), timeout);
}

} // namespace palitra
