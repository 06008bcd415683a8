// palitra — portable address wait, and the backend switch.
//
// A fixed table of buckets, each a mutex + condition variable, keyed by the
// address. A waiter checks the word *under the bucket mutex* before sleeping;
// a waker takes the same mutex after the word changed, then notifies. So a
// change that precedes the wake is either seen by the check or the waiter is
// already inside cv.wait when the notify comes: no lost wake-up. The waker
// never reads the word: the address may be gone (address_wait.hpp).
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <mutex>

#include "wait/address_wait.hpp"

namespace palitra::detail {
namespace portable_wait {
namespace {

struct bucket {
  std::mutex m;
  std::condition_variable cv;
};

// 64 buckets: enough that unrelated slots rarely share one (a shared bucket
// costs only an extra wake-up), small enough to stay in a few KiB. Leaked on
// purpose so that waits during static destruction stay valid.
bucket& bucket_for(const void* addr) noexcept {
  static bucket* table = new bucket[64];
  auto k = reinterpret_cast<std::uintptr_t>(addr);
  k ^= k >> 17;
  k *= 0x9E3779B97F4A7C15ull;
  return table[(k >> 58) & 63];
}

} // namespace

void wait(const std::atomic<std::uint32_t>& a, std::uint32_t expected) noexcept {
  bucket& b = bucket_for(&a);
  std::unique_lock<std::mutex> lk(b.m);
  // acquire is not needed here (the caller re-loads with acquire); relaxed
  // only decides whether to sleep, under the bucket mutex.
  if (a.load(std::memory_order_relaxed) != expected) return;
  b.cv.wait(lk);
}

bool wait_until(const std::atomic<std::uint32_t>& a, std::uint32_t expected,
                std::chrono::steady_clock::time_point deadline) noexcept {
  bucket& b = bucket_for(&a);
  std::unique_lock<std::mutex> lk(b.m);
  if (a.load(std::memory_order_relaxed) != expected) return true; // as wait()
  return b.cv.wait_until(lk, deadline) == std::cv_status::no_timeout;
}

void wake(const void* addr, int) noexcept {
  bucket& b = bucket_for(addr);
  { std::lock_guard<std::mutex> lk(b.m); } // orders the change before a waiter's check
  b.cv.notify_all(); // the bucket is shared: wake all, each re-checks its word
}

} // namespace portable_wait

namespace {

wait_backend initial_backend() noexcept {
  const char* e = std::getenv("PALITRA_WAIT_BACKEND");
  if (e != nullptr && std::strcmp(e, "portable") == 0) return wait_backend::portable;
  return wait_backend::native;
}

// Constant-initialised to "not chosen yet" and chosen at the first use, not
// by a dynamic initialiser: a run() from another translation unit's static
// initialiser would otherwise wait on `native` (the zero value) and see the
// backend flip to the environment's choice under it (review A17).
constexpr int backend_unset = -1;
// relaxed: the switch is set only while nothing waits (contract above); the
// first-use CAS only makes racing first users agree.
constinit std::atomic<int> g_backend{backend_unset};

} // namespace

void set_wait_backend(wait_backend b) noexcept {
  g_backend.store(static_cast<int>(b), std::memory_order_relaxed); // see g_backend
}
wait_backend get_wait_backend() noexcept {
  int b = g_backend.load(std::memory_order_relaxed); // see g_backend
  if (b == backend_unset) [[unlikely]] {
    const int chosen = static_cast<int>(initial_backend());
    if (g_backend.compare_exchange_strong(b, chosen, std::memory_order_relaxed)) b = chosen;
  }
  return static_cast<wait_backend>(b);
}

void address_wait(const std::atomic<std::uint32_t>& a, std::uint32_t expected) noexcept {
  if (get_wait_backend() == wait_backend::portable)
    portable_wait::wait(a, expected);
  else
    native_wait::wait(a, expected);
}

bool address_wait_until(const std::atomic<std::uint32_t>& a, std::uint32_t expected,
                        std::chrono::steady_clock::time_point deadline) noexcept {
  if (get_wait_backend() == wait_backend::portable)
    return portable_wait::wait_until(a, expected, deadline);
  return native_wait::wait_until(a, expected, deadline);
}

void address_wake_one(const void* addr) noexcept {
  if (get_wait_backend() == wait_backend::portable)
    portable_wait::wake(addr, 1);
  else
    native_wait::wake(addr, 1);
}

void address_wake_all(const void* addr) noexcept {
  if (get_wait_backend() == wait_backend::portable)
    portable_wait::wake(addr, 1 << 30);
  else
    native_wait::wake(addr, 1 << 30);
}

} // namespace palitra::detail
