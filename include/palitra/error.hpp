// palitra — the error types (DESIGN.md §2 "Errors"). Every palitra error
// derives from palitra::error, itself a std::runtime_error, and carries the
// std::error_code of the operating-system failure behind it when there is one.
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>

namespace palitra {

/// Base of every error palitra throws.
/// `code()` is the operating-system error behind it, or a default-constructed
/// (zero) error_code when there is none.
class error : public std::runtime_error {
public:
  explicit error(const std::string& what) : std::runtime_error(what) {}
  error(const std::string& what, std::error_code code)
      : std::runtime_error(what + ": " + code.message()), code_(code) {}
  const std::error_code& code() const noexcept { return code_; }

private:
  std::error_code code_;
};

/// A `run`/`gather`/`with_timeout` deadline passed; the work was cancelled and
/// its frame destroyed before this was thrown.
class timeout_error : public error {
public:
  using error::error;
};

/// Thrown inside a coroutine at a cancellation point once its cancellation
/// was requested; reaches a caller whose call was cancelled (`future::cancel`).
class cancelled_error : public error {
public:
  using error::error;
};

/// Submitting to a closed or closing runner, a call cancelled by `close()`,
/// or using a runner inherited across `fork()`.
class runner_closed_error : public error {
public:
  using error::error;
};

/// A blocking call (`run`, `gather`, `future::get`, `close`) made on the
/// runner's own loop thread: it would deadlock, so it throws at once.
class reentrancy_error : public error {
public:
  using error::error;
};

/// An operating-system error in I/O; `code()` gives the std::error_code.
class io_error : public error {
public:
  using error::error;
};

/// `send` on a closed `channel`.
class channel_closed_error : public error {
public:
  using error::error;
};

} // namespace palitra
