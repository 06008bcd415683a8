// palitra — channel_core: the non-template counts and queues of channel<T>.
// Protocol: include/palitra/detail/waiter_list.hpp (W1-W5); the channel's
// reading of it is at the top of include/palitra/channel.hpp.
#include <palitra/channel.hpp>

namespace palitra::detail {

channel_core::channel_core(std::size_t capacity) : capacity_(capacity) {
  if (capacity == 0)
    throw error("palitra::channel: capacity 0; a channel needs capacity >= 1 (a rendezvous "
                "channel is not supported)");
}

channel_core::~channel_core() { core_.abandon(senders_); } // W5; core_ asserts the thread

void channel_core::pump() noexcept {
  // Granted receivers commit in grant order (I3) and each takes the front
  // value, so reserving by count is reserving the oldest values.
  while (count_ > recv_reserved_ && core_.wake_front(core_.queue(), wait_state::granted))
    ++recv_reserved_;
  if (closed_) {
    core_.wake_all(senders_, wait_state::closed);
    // While values are reserved, queued receivers wait: a reservation given
    // back (a cancelled receiver) goes to them, not to nullopt.
    if (count_ == 0) core_.wake_all(core_.queue(), wait_state::closed);
    return;
  }
  while (count_ + send_reserved_ < capacity_ && core_.wake_front(senders_, wait_state::granted))
    ++send_reserved_;
}

void channel_core::close() {
  closed_ = true;
  pump();
}

void channel_core::throw_closed() {
  throw channel_closed_error("palitra::channel::send: the channel is closed; stop sending "
                             "after close() (receivers drain what is left)");
}

} // namespace palitra::detail
