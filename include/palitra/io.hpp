// palitra — readiness waits on any non-blocking fd (DESIGN.md §2 "I/O"):
// the integration point for a C library with a "give me your fd" API
// (hiredis, c-ares, mosquitto, ...). palitra's own sockets are in net.hpp.
#pragma once

#include <palitra/task.hpp>

namespace palitra {

/// Wait until `fd` is readable (or has an error or hang-up pending: the
/// next read reports it). The fd stays the caller's and must stay open
/// until the wait ends; it is registered with the loop only while a wait is
/// pending, so the caller may close it as soon as the wait returns.
/// One-shot; a read wait and a write wait on one fd may run at once.
/// Thread: a loop thread (else palitra::error). Cancel: yes; cancelling
/// removes the interest. Throws: io_error for an fd the reactor refuses
/// (EBADF; EPERM for a regular file; EEXIST for a palitra socket's own fd).
task<void> wait_readable(int fd);

/// As wait_readable, for writability.
task<void> wait_writable(int fd);

} // namespace palitra
