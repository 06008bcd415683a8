// palitra — handles for fds the loop does not own (wait_readable /
// wait_writable on a caller's fd; DESIGN.md §2 "I/O").
//
// The fd stays the caller's, who may close it the moment a wait ends, so a
// registration must not outlive the waits on it: the first wait on an fd
// attaches it, the last one to end detaches it (I5 holds because the caller
// can only close the fd after its wait returned). A read wait and a write
// wait on one fd at once share the entry: epoll accepts one registration
// per fd number.
//
// Entries are indexed by fd number and their memory is kept for reuse, so
// waiting on an fd again costs the epoll_ctl calls and nothing from the
// heap. Loop thread only.
#pragma once

#include <memory>
#include <system_error>
#include <vector>

#include "reactor.hpp"

namespace palitra::detail {

class fd_table {
public:
  /// The attached handle for `fd`, one more wait counted on it. Returns
  /// nullptr and sets `ec` if the OS refused it (EBADF, EPERM for a regular
  /// file, EEXIST for an fd palitra already holds, ENOMEM).
  io_handle* acquire(reactor& r, int fd, std::error_code& ec);
  /// One wait on `h` ended; the last one detaches it.
  void release(reactor& r, io_handle& h) noexcept;

private:
  struct entry {
    io_handle h;
    int waits = 0;
  };
  std::vector<std::unique_ptr<entry>> by_fd_;
};

} // namespace palitra::detail
