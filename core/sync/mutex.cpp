// palitra — mutex and mutex_guard. Protocol:
// include/palitra/detail/waiter_list.hpp (W1-W5). unlock() with waiters
// keeps locked_ set and reserves the lock for the front one (I2: try_lock
// cannot barge in); a granted waiter cancelled before it runs hands it on.
#include <utility>

#include <palitra/error.hpp>
#include <palitra/sync.hpp>

namespace palitra {
namespace detail {

struct mutex_lock_op : single_queue_op {
  static constexpr const char* what = "palitra::mutex::lock";
  mutex& m;
  bool take_now() noexcept {
    if (m.locked_) return false; // queued or granted waiters keep it set (I2)
    m.locked_ = true;
    return true;
  }
  void give_back() noexcept { m.hand_off(); } // keeps I4
};

} // namespace detail

mutex::mutex() noexcept : core_("palitra::mutex") {}
mutex::~mutex() = default;

task<void> mutex::lock() {
  co_await detail::sync_awaiter<detail::mutex_lock_op>({{core_}, *this});
}

bool mutex::try_lock() {
  core_.enter("palitra::mutex::try_lock");
  return detail::mutex_lock_op{{core_}, *this}.take_now();
}

void mutex::unlock() {
  core_.enter("palitra::mutex::unlock");
  if (!locked_) throw error("palitra::mutex::unlock: the mutex is not locked; unlock only after lock()");
  hand_off();
}

void mutex::hand_off() noexcept {
  // W2: the lock passes to the front live waiter, staying locked.
  if (!core_.wake_front(core_.queue(), detail::wait_state::granted)) locked_ = false;
}

task<mutex_guard> mutex::scoped() {
  co_await lock();
  co_return mutex_guard(*this);
}

mutex_guard& mutex_guard::operator=(mutex_guard&& o) noexcept {
  if (this != &o) {
    unlock();
    m_ = std::exchange(o.m_, nullptr);
  }
  return *this;
}

void mutex_guard::unlock() noexcept {
  // noexcept: a guard destroyed off the mutex's loop is a misuse that
  // terminates (unlock() throws there), as documented on mutex_guard.
  if (mutex* m = std::exchange(m_, nullptr)) m->unlock();
}

} // namespace palitra
