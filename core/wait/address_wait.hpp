// palitra — the address-wait contract: block while a 32-bit word holds a
// value, wake the waiters of an address. One implementation per platform
// (address_wait_linux.cpp: futex) plus a portable one that is always
// compiled and tested (address_wait_portable.cpp: a striped table of mutex +
// condition variable, keyed by address).
//
// Contract (both backends):
//   - wait(a, v) returns when woken, spuriously, or at once if a != v; the
//     caller must re-check the word (completion_slot.hpp I2).
//   - wake(addr) may be called with an address whose object is gone: it uses
//     the address only as a key and never dereferences it.
//   - A wake that follows a change of the word is never lost by a waiter that
//     checked the word before the change.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace palitra::detail {

enum class wait_backend { native, portable };

/// Select the backend for the whole process. Only while nothing waits
/// (tests, and PALITRA_WAIT_BACKEND=portable read at start-up).
void set_wait_backend(wait_backend b) noexcept;
wait_backend get_wait_backend() noexcept;

void address_wait(const std::atomic<std::uint32_t>& a, std::uint32_t expected) noexcept;
/// false if `deadline` passed (steady clock).
bool address_wait_until(const std::atomic<std::uint32_t>& a, std::uint32_t expected,
                        std::chrono::steady_clock::time_point deadline) noexcept;
void address_wake_one(const void* addr) noexcept;
void address_wake_all(const void* addr) noexcept;

namespace native_wait {
void wait(const std::atomic<std::uint32_t>& a, std::uint32_t expected) noexcept;
bool wait_until(const std::atomic<std::uint32_t>& a, std::uint32_t expected,
                std::chrono::steady_clock::time_point deadline) noexcept;
void wake(const void* addr, int n) noexcept;
} // namespace native_wait

namespace portable_wait {
void wait(const std::atomic<std::uint32_t>& a, std::uint32_t expected) noexcept;
bool wait_until(const std::atomic<std::uint32_t>& a, std::uint32_t expected,
                std::chrono::steady_clock::time_point deadline) noexcept;
void wake(const void* addr, int n) noexcept;
} // namespace portable_wait

} // namespace palitra::detail
