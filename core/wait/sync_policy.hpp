// palitra — the synchronisation policy that palitra's lock-free protocols
// are written against (folly's DeterministicSchedule pattern).
//
// The completion slot, the submission queue and the lifecycle gate are class
// templates over a policy providing:
//   template <class T> using atomic = ...;     // std::atomic-compatible
//   static void wait(const atomic<std::uint32_t>&, std::uint32_t expected);
//   static bool wait_until(const atomic<std::uint32_t>&, std::uint32_t,
//                          std::chrono::steady_clock::time_point);
//   static void wake_one(const void* addr);    // address used as a key only
//   static void yield();                       // give the CPU away
//   static void pause();                       // spin-wait hint, keep the CPU
//   static std::chrono::steady_clock::time_point now();
// Production code uses os_sync; tests run the same protocol code under a
// seeded scheduler that interleaves threads at every atomic access and
// injects spurious wake-ups and timeouts (stress/dsched).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace palitra::detail {

struct os_sync {
  template <class T> using atomic = std::atomic<T>;
  static void wait(const std::atomic<std::uint32_t>& a, std::uint32_t expected) noexcept;
  static bool wait_until(const std::atomic<std::uint32_t>& a, std::uint32_t expected,
                         std::chrono::steady_clock::time_point deadline) noexcept;
  static void wake_one(const void* addr) noexcept;
  static void yield() noexcept;
  /// The CPU's spin-wait hint (x86 `pause`, tens of ns: docs/spin.md;
  /// Arm `yield`): no syscall, the CPU stays ours.
  static void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    asm volatile("yield" ::: "memory");
#endif
  }
  static std::chrono::steady_clock::time_point now() noexcept {
    return std::chrono::steady_clock::now();
  }
};

} // namespace palitra::detail
