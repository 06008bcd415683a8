// palitra — fault-injection seams (see fault.hpp).
#include "diag/fault.hpp"

namespace palitra::detail::fault {
namespace {

// relaxed everywhere: these are test switches, set before the operation
// they affect starts; they publish nothing else.
std::atomic<bool> g_armed{false};
std::atomic<long> g_frame_countdown{-1};
std::atomic<bool> g_fail_thread{false};
std::atomic<const char*> g_soname{nullptr};
std::atomic<bool> g_soname_taken{false};
std::atomic<int> g_pwait2_errno{0};

void rearm() noexcept {
  g_armed.store(g_frame_countdown.load(std::memory_order_relaxed) >= 0 ||
                    g_fail_thread.load(std::memory_order_relaxed),
                std::memory_order_relaxed);
}

} // namespace

void fail_frame_alloc_after(long n) noexcept {
  g_frame_countdown.store(n, std::memory_order_relaxed);
  rearm();
}

void fail_next_thread_create(bool on) noexcept {
  g_fail_thread.store(on, std::memory_order_relaxed);
  rearm();
}

bool frame_alloc_should_fail() noexcept {
  if (!g_armed.load(std::memory_order_relaxed)) [[likely]]
    return false;
  long n = g_frame_countdown.load(std::memory_order_relaxed);
  while (n >= 0) {
    if (g_frame_countdown.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) {
      if (n != 0) return false;
      rearm(); // fired once; now -1
      return true;
    }
  }
  return false;
}

bool thread_create_should_fail() noexcept {
  if (!g_armed.load(std::memory_order_relaxed)) [[likely]]
    return false;
  if (!g_fail_thread.exchange(false, std::memory_order_relaxed)) return false;
  rearm();
  return true;
}

bool force_mimalloc_soname(const char* soname) noexcept {
  // seq_cst store then load, against take_mimalloc_soname's store then load
  // (Dekker): either the chooser sees the name or we see that it chose.
  g_soname.store(soname, std::memory_order_seq_cst);
  return !g_soname_taken.load(std::memory_order_seq_cst);
}

const char* take_mimalloc_soname() noexcept {
  g_soname_taken.store(true, std::memory_order_seq_cst); // pairs with force_mimalloc_soname
  return g_soname.load(std::memory_order_seq_cst);
}
void fail_epoll_pwait2(int err) noexcept { g_pwait2_errno.store(err, std::memory_order_relaxed); }

// Not behind g_armed: it is read once per reactor wait, already a syscall.
int epoll_pwait2_error() noexcept { return g_pwait2_errno.load(std::memory_order_relaxed); }

} // namespace palitra::detail::fault
