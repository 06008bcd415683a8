// palitra — the platform layer on Linux (glibc): see platform.hpp.
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "platform.hpp"

namespace palitra::detail::platform {

void set_thread_name(std::string_view name) noexcept {
  char buf[16]; // the kernel's TASK_COMM_LEN, terminator included
  const std::size_t n = name.size() < sizeof buf - 1 ? name.size() : sizeof buf - 1;
  std::memcpy(buf, name.data(), n);
  buf[n] = '\0';
  pthread_setname_np(pthread_self(), buf);
}

std::uint32_t cpu_tag() noexcept {
  const int c = sched_getcpu(); // glibc >= 2.35 reads the rseq area: no syscall
  return c < 0 ? 0 : static_cast<std::uint32_t>(c) + 1;
}

void yield_cpu() noexcept { sched_yield(); }

void on_fork_child(void (*fn)()) noexcept { pthread_atfork(nullptr, nullptr, fn); }

void exit_now(std::string_view msg) noexcept {
  [[maybe_unused]] const auto w = ::write(2, msg.data(), msg.size());
  ::_exit(EXIT_FAILURE);
}

} // namespace palitra::detail::platform
