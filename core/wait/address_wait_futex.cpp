// palitra — address wait on Linux: raw futex, private (process-local) ops.
#include <cerrno>
#include <climits>
#include <ctime>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "wait/address_wait.hpp"

namespace palitra::detail::native_wait {
namespace {

long futex(const void* addr, int op, std::uint32_t val, const timespec* ts,
           std::uint32_t val3) noexcept {
  return syscall(SYS_futex, addr, op, val, ts, nullptr, val3);
}

} // namespace

void wait(const std::atomic<std::uint32_t>& a, std::uint32_t expected) noexcept {
  // EINTR, EAGAIN (the word changed) and spurious returns all go back to the
  // caller, which re-checks the word.
  futex(&a, FUTEX_WAIT_PRIVATE, expected, nullptr, 0);
}

bool wait_until(const std::atomic<std::uint32_t>& a, std::uint32_t expected,
                std::chrono::steady_clock::time_point deadline) noexcept {
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, which is
  // what libstdc++'s steady_clock reads: no drift across EINTR retries.
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      deadline.time_since_epoch())
                      .count();
  if (ns <= 0) return false;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  const long r = futex(&a, FUTEX_WAIT_BITSET_PRIVATE, expected, &ts, FUTEX_BITSET_MATCH_ANY);
  return !(r == -1 && errno == ETIMEDOUT);
}

void wake(const void* addr, int n) noexcept {
  futex(addr, FUTEX_WAKE_PRIVATE, static_cast<std::uint32_t>(n), nullptr, 0);
}

} // namespace palitra::detail::native_wait
