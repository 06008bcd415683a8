// palitra — os_sync: the production synchronisation policy
// (sync_policy.hpp).
#include "wait/sync_policy.hpp"

#include "wait/address_wait.hpp"
#include "platform/platform.hpp"

namespace palitra::detail {

void os_sync::wait(const std::atomic<std::uint32_t>& a, std::uint32_t expected) noexcept {
  address_wait(a, expected);
}

bool os_sync::wait_until(const std::atomic<std::uint32_t>& a, std::uint32_t expected,
                         std::chrono::steady_clock::time_point deadline) noexcept {
  return address_wait_until(a, expected, deadline);
}

void os_sync::wake_one(const void* addr) noexcept { address_wake_one(addr); }

void os_sync::yield() noexcept { platform::yield_cpu(); }

} // namespace palitra::detail
