// palitra — handles for fds the loop does not own (fd_table.hpp).
#include <palitra/config.hpp>

#include "fd_table.hpp"

namespace palitra::detail {

io_handle* fd_table::acquire(reactor& r, int fd, std::error_code& ec) {
  if (fd < 0) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return nullptr;
  }
  const auto i = static_cast<std::size_t>(fd);
  if (i >= by_fd_.size()) by_fd_.resize(i + 1);
  if (by_fd_[i] == nullptr) by_fd_[i] = std::make_unique<entry>();
  entry& e = *by_fd_[i];
  if (e.waits == 0) {
    ec = r.attach(e.h, fd);
    if (ec) return nullptr;
  }
  ++e.waits;
  return &e.h;
}

void fd_table::release(reactor& r, io_handle& h) noexcept {
  PALITRA_ASSERT(h.fd >= 0 && static_cast<std::size_t>(h.fd) < by_fd_.size(), "fd_table: unknown handle");
  entry& e = *by_fd_[static_cast<std::size_t>(h.fd)];
  PALITRA_ASSERT(&e.h == &h && e.waits > 0, "fd_table: released more than acquired");
  if (--e.waits == 0) r.detach(h);
}

} // namespace palitra::detail
