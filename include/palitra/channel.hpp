// palitra — channel<T>: a bounded FIFO between tasks of one loop
// (DESIGN.md §2 "Inside coroutines"; asyncio.Queue with close()).
//
// Threading, lifetime and misuse are as for the primitives of sync.hpp; the
// protocol (W1-W5, the reservation hand-off, I1-I6) is at the top of
// detail/waiter_list.hpp. For a channel the reserved resource is a value
// (for a receiver) or a free slot (for a sender): a granted sender's value
// enters the buffer, and a granted receiver's value leaves it, only when
// that task resumes, so a cancelled one neither delivers nor receives
// (I4). Close: queued and granted senders throw channel_closed_error;
// receivers drain the buffer, then get std::nullopt once it is empty with
// no value reserved.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <type_traits>
#include <utility>

#include <palitra/detail/waiter_list.hpp>
#include <palitra/error.hpp>
#include <palitra/task.hpp>

namespace palitra {

namespace detail {

/// The counts and queues of a channel, without its values (channel.cpp).
/// Receivers wait in core_.queue(), senders in senders_. Loop thread.
class channel_core {
public:
  explicit channel_core(std::size_t capacity); // throws palitra::error for 0
  ~channel_core();
  channel_core(const channel_core&) = delete;
  channel_core& operator=(const channel_core&) = delete;

  /// W1 fast paths (I2: nobody of that kind queued or reserved).
  bool send_ready() const noexcept {
    return senders_.empty() && send_reserved_ == 0 && count_ < capacity_;
  }
  bool recv_ready() const noexcept {
    return core_.queue().empty() && recv_reserved_ == 0 && count_ > 0;
  }
  /// W2 after every change: reserve values for receivers and free slots for
  /// senders, FIFO; once closed, wake senders (to throw) and, when no value
  /// is left at all, receivers (to get nullopt).
  void pump() noexcept;
  void close();
  [[noreturn]] static void throw_closed();

  sync_core core_{"palitra::channel"};
  waiter_list senders_;
  std::size_t capacity_;
  std::size_t count_ = 0;         // values in the buffer, reserved ones included
  std::size_t recv_reserved_ = 0; // values promised to granted receivers
  std::size_t send_reserved_ = 0; // slots promised to granted senders
  bool closed_ = false;
};

} // namespace detail

/// A bounded FIFO of T between tasks of one loop. Move-only values; T is
/// moved in by send() and out by recv(), never copied.
template <class T> class channel {
public:
  /// Throws: palitra::error if capacity is 0. Thread: any.
  explicit channel(std::size_t capacity) : st_(capacity) {}
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  /// Put `v` in, waiting (FIFO among senders) while the channel is full.
  /// Throws: channel_closed_error once closed, also for a sender waiting when
  /// close() happens (its value is dropped). Cancel: yes; a cancelled sender
  /// never delivers its value.
  task<void> send(T v) {
    // A named awaiter: gcc 12 destroys a temporary with a non-trivial
    // destructor twice when it is built inside the co_await operand.
    detail::sync_awaiter<send_op> a(send_op{*this, std::move(v)});
    co_await a;
  }
  /// Take the oldest value, waiting (FIFO among receivers) while it is
  /// empty; std::nullopt once closed and drained. Cancel: yes; a cancelled
  /// receiver never takes a value (the next receiver gets it).
  task<std::optional<T>> recv() {
    detail::sync_awaiter<recv_op> a(recv_op{*this, std::nullopt}); // named: as in send()
    co_return co_await a;
  }
  /// Close: no value is accepted any more; every waiter is woken (senders
  /// throw, receivers drain then get nullopt). Idempotent.
  void close() {
    st_.core_.enter("palitra::channel::close");
    st_.close();
  }
  /// Thread: any, but a plain read (as event::is_set).
  bool closed() const noexcept { return st_.closed_; }
  /// Values in the buffer (those reserved for woken receivers included).
  /// Thread: as closed().
  std::size_t size() const noexcept { return st_.count_; }
  std::size_t capacity() const noexcept { return st_.capacity_; }

private:
  struct send_op {
    static constexpr const char* what = "palitra::channel::send";
    channel& ch;
    T value;
    detail::sync_core& core() noexcept { return ch.st_.core_; }
    detail::waiter_list& queue() noexcept { return ch.st_.senders_; }
    bool take_now() {
      if (ch.st_.closed_) detail::channel_core::throw_closed();
      if (!ch.st_.send_ready()) return false;
      deliver();
      return true;
    }
    void queued() noexcept { ch.st_.pump(); }
    void give_back() noexcept {
      --ch.st_.send_reserved_; // the slot goes to the next sender (I4)
      ch.st_.pump();
    }
    void finish(detail::wait_state s) {
      if (s == detail::wait_state::ready) return;
      if (s == detail::wait_state::granted) {
        --ch.st_.send_reserved_;
        if (!ch.st_.closed_) {
          deliver();
          return;
        }
        ch.st_.pump();
      }
      detail::channel_core::throw_closed();
    }
    void deliver() {
      ch.buf_.push_back(std::move(value));
      ++ch.st_.count_;
      ch.st_.pump();
    }
  };

  struct recv_op {
    static constexpr const char* what = "palitra::channel::recv";
    channel& ch;
    std::optional<T> value;
    detail::sync_core& core() noexcept { return ch.st_.core_; }
    detail::waiter_list& queue() noexcept { return ch.st_.core_.queue(); }
    bool take_now() {
      if (ch.st_.recv_ready()) {
        take();
        return true;
      }
      return ch.st_.closed_ && ch.st_.count_ == 0; // closed and drained: nullopt
    }
    void queued() noexcept { ch.st_.pump(); }
    void give_back() noexcept {
      --ch.st_.recv_reserved_; // the value goes to the next receiver (I4)
      ch.st_.pump();
    }
    std::optional<T> finish(detail::wait_state s) {
      if (s == detail::wait_state::granted) {
        --ch.st_.recv_reserved_;
        take();
      }
      return std::move(value);
    }
    void take() {
      value.emplace(std::move(ch.buf_.front()));
      ch.buf_.pop_front();
      --ch.st_.count_;
      ch.st_.pump();
    }
  };

  detail::channel_core st_;
  std::deque<T> buf_; // destroyed before st_ abandons any waiter
};

} // namespace palitra
