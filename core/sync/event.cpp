// palitra — event. Protocol: include/palitra/detail/waiter_list.hpp (W1-W5).
// set() grants every queued waiter; nothing is reserved, so a waiter
// cancelled after the grant has nothing to give back.
#include <palitra/sync.hpp>

namespace palitra {
namespace detail {

struct event_wait_op : single_queue_op {
  static constexpr const char* what = "palitra::event::wait";
  event& e;
  bool take_now() const noexcept { return e.set_; }
  void give_back() noexcept {}
};

} // namespace detail

event::event() noexcept : core_("palitra::event") {}
event::~event() = default;

void event::set() {
  core_.enter("palitra::event::set");
  set_ = true;
  core_.wake_all(core_.queue(), detail::wait_state::granted);
}

void event::clear() {
  core_.enter("palitra::event::clear");
  set_ = false;
}

task<void> event::wait() {
  co_await detail::sync_awaiter<detail::event_wait_op>({{core_}, *this});
}

} // namespace palitra
