// palitra — awaitable combinators for use inside coroutines:
// when_all, when_all_settled, when_any (the awaitable counterparts of
// gather, gather_settled and a race).
#pragma once

#include <cstddef>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include <palitra/detail/group.hpp>
#include <palitra/outcome.hpp>
#include <palitra/task.hpp>

namespace palitra {

/// Run all tasks concurrently; a std::tuple of their results (`void` →
/// std::monostate). On the first failure (first in time) the siblings are
/// cancelled and awaited, then that exception is rethrown.
/// Thread: loop thread. Cancel: yes (cancels every child, awaits them).
template <class... T>
task<std::tuple<detail::result_t<T>...>> when_all(task<T>... ts) {
  co_return co_await detail::tuple_group<detail::group_policy::all, T...>(std::move(ts)...);
}

/// As above over a vector; results in input order; empty in, empty out.
template <class T>
task<std::vector<detail::result_t<T>>> when_all(std::vector<task<T>> ts) {
  co_return co_await detail::vector_group<detail::group_policy::all, T>(std::move(ts));
}

/// Run all tasks concurrently and never throw for a task's failure: one
/// outcome per task, in input order. Cancel: yes (cancels every child).
template <class T>
task<std::vector<outcome<T>>> when_all_settled(std::vector<task<T>> ts) {
  co_return co_await detail::vector_group<detail::group_policy::settled, T>(std::move(ts));
}

/// Race: the first task to finish (value or exception) wins; the others are
/// cancelled and awaited. The variant's index is the winner's position; its
/// exception, if it failed, is rethrown. Cancel: yes.
template <class T0, class... T>
task<std::variant<detail::result_t<T0>, detail::result_t<T>...>> when_any(task<T0> t0,
                                                                          task<T>... ts) {
  co_return co_await detail::tuple_group<detail::group_policy::any, T0, T...>(std::move(t0),
                                                                               std::move(ts)...);
}

/// Race over a vector: {index of the winner, its value}. Throws palitra::error
/// for an empty vector.
template <class T>
task<std::pair<std::size_t, detail::result_t<T>>> when_any(std::vector<task<T>> ts) {
  co_return co_await detail::vector_group<detail::group_policy::any, T>(std::move(ts));
}

} // namespace palitra
