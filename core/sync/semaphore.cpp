// palitra — semaphore. Protocol: include/palitra/detail/waiter_list.hpp
// (W1-W5). count_ holds only free units: a released unit goes straight to
// the front waiter (reserved), so count_ > 0 implies nobody is queued (I2).
#include <palitra/error.hpp>
#include <palitra/sync.hpp>

namespace palitra {
namespace detail {

struct semaphore_acquire_op : single_queue_op {
  static constexpr const char* what = "palitra::semaphore::acquire";
  semaphore& s;
  bool take_now() noexcept {
    if (s.count_ == 0) return false;
    --s.count_;
    return true;
  }
  void give_back() noexcept { s.hand_off(1); } // keeps I4
};

} // namespace detail

semaphore::semaphore(std::ptrdiff_t initial) : core_("palitra::semaphore"), count_(initial) {
  if (initial < 0) throw error("palitra::semaphore: the initial count is negative; pass a count >= 0");
}

semaphore::~semaphore() = default;

task<void> semaphore::acquire() {
  co_await detail::sync_awaiter<detail::semaphore_acquire_op>({{core_}, *this});
}

bool semaphore::try_acquire() {
  core_.enter("palitra::semaphore::try_acquire");
  return detail::semaphore_acquire_op{{core_}, *this}.take_now();
}

void semaphore::release(std::ptrdiff_t n) {
  core_.enter("palitra::semaphore::release");
  if (n < 0) throw error("palitra::semaphore::release: n is negative; release(n) returns n >= 0 units");
  hand_off(n);
}

void semaphore::hand_off(std::ptrdiff_t n) noexcept {
  // W2: one unit per front live waiter, the rest to the count.
  while (n > 0 && core_.wake_front(core_.queue(), detail::wait_state::granted)) --n;
  count_ += n;
}

} // namespace palitra
