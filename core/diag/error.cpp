// palitra — error helpers shared by the headers and the core.
#include <cstdio>
#include <cstdlib>
#include <string>

#include <palitra/config.hpp>
#include <palitra/detail/loop_hooks.hpp>
#include "runtime/call.hpp"
#include <palitra/error.hpp>

namespace palitra::detail {

void assert_fail(const char* cond, const char* msg, const char* file, int line) noexcept {
  std::fprintf(stderr, "palitra: invariant violated: %s (%s) at %s:%d\n", msg, cond, file,
               line);
  std::abort();
}

bool is_cancellation(const std::exception_ptr& e) noexcept {
  if (!e) return false;
  try {
    std::rethrow_exception(e);
  } catch (const cancelled_error&) {
    return true;
  } catch (...) {
    return false;
  }
}

void throw_cancelled(const char* what) {
  throw cancelled_error(std::string(what) +
                        ": the task was cancelled (future::cancel, a timeout or runner::close)");
}

void throw_cancelled_end(const call_record& op, const char* what) {
  const std::string w(what);
  if (op.outcome_ == call_outcome::rejected)
    throw runner_closed_error(w + ": the runner was closed before the call started; create a "
                                  "new runner (or call palitra::run again for the global one)");
  switch (op.reason_) {
  case end_reason::timeout:
    throw timeout_error(w + ": deadline passed; the task was cancelled and its frame destroyed "
                            "(raise the timeout or make the task faster)");
  case end_reason::close:
    throw runner_closed_error(w + ": cancelled by runner::close() while in flight");
  case end_reason::cancel:
  case end_reason::none:
    break;
  }
  throw cancelled_error(w + ": cancelled by future::cancel() (or the future was dropped)");
}

} // namespace palitra::detail
