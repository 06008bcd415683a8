// palitra — outcome<T>: a value or the exception a task ended with
// (what gather_settled returns; Python's return_exceptions=True).
#pragma once

#include <exception>
#include <utility>
#include <variant>

#include <palitra/task.hpp>

namespace palitra {

/// A task's result: a value (`void` → std::monostate) or an exception.
template <class T> class outcome {
public:
  using value_type = detail::result_t<T>;

  explicit outcome(value_type v) : v_(std::in_place_index<0>, std::move(v)) {}
  explicit outcome(std::exception_ptr e) : v_(std::in_place_index<1>, std::move(e)) {}

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  /// The value; rethrows the exception if there is none.
  value_type& value() & {
    if (!has_value()) std::rethrow_exception(std::get<1>(v_));
    return std::get<0>(v_);
  }
  const value_type& value() const& {
    if (!has_value()) std::rethrow_exception(std::get<1>(v_));
    return std::get<0>(v_);
  }
  value_type value() && {
    if (!has_value()) std::rethrow_exception(std::get<1>(v_));
    return std::move(std::get<0>(v_));
  }

  /// The exception, or nullptr when there is a value.
  std::exception_ptr error() const noexcept {
    return has_value() ? nullptr : std::get<1>(v_);
  }

private:
  std::variant<value_type, std::exception_ptr> v_;
};

} // namespace palitra
