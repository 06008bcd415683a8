// palitra — wait_readable / wait_writable on a caller's fd (io.hpp), over
// the loop's fd_table (reactor/fd_table.hpp) and the reactor's one-shot ops.
#include <string>

#include <palitra/error.hpp>
#include <palitra/io.hpp>

#include "reactor/io_await.hpp"

namespace palitra {
namespace {

// The registration of one wait: taken before the op starts, given back
// after the awaiter (and so the op) is gone, whatever way the wait ends.
class fd_lease {
public:
  fd_lease(detail::loop& l, int fd, const char* what) : l_(l) {
    std::error_code ec;
    h_ = l.fds().acquire(l.io(), fd, ec);
    if (h_ == nullptr)
      throw io_error(std::string(what) + ": cannot wait on fd " + std::to_string(fd), ec);
  }
  ~fd_lease() { l_.fds().release(l_.io(), *h_); }
  fd_lease(const fd_lease&) = delete;
  fd_lease& operator=(const fd_lease&) = delete;
  detail::io_handle& handle() const noexcept { return *h_; }

private:
  detail::loop& l_;
  detail::io_handle* h_;
};

task<void> wait_fd(int fd, detail::io_kind kind, const char* what) {
  detail::loop& l = detail::require_loop(what);
  fd_lease lease(l, fd, what);
  // The fd stays registered only while we wait, so nothing can close it
  // under us through palitra: `closed` cannot happen here.
  (void)co_await detail::io_awaiter(l, lease.handle(), kind, what);
}

} // namespace

task<void> wait_readable(int fd) { return wait_fd(fd, detail::io_kind::readable, "palitra::wait_readable"); }
task<void> wait_writable(int fd) { return wait_fd(fd, detail::io_kind::writable, "palitra::wait_writable"); }

} // namespace palitra
