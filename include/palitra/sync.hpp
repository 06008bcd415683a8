// palitra — loop-local primitives: event, mutex (+ mutex_guard), semaphore
// (DESIGN.md §2 "Inside coroutines"), modelled on asyncio's Event, Lock and
// Semaphore. channel<T> is in channel.hpp.
//
// Each object belongs to the loop it is first used on and needs no atomics.
// Waiters are served FIFO; every wait is a cancellation point, and a
// cancelled waiter leaves no trace. The protocol (states, the reservation
// hand-off rule, invariants) is at the top of detail/waiter_list.hpp.
//
// Common to every member below unless it says otherwise:
//   Thread: the owning loop's thread (the loop of the first use). Elsewhere,
//     or on another runner's loop, it throws palitra::error naming the object
//     and the fix. Construction and destruction: any thread.
//   Lifetime: destroying an object while tasks wait on it is a misuse. On its
//     loop, every waiter is resumed (through the run queue) and its wait
//     throws palitra::error("... destroyed while a task waited on it");
//     on any other thread it stops the process (PALITRA_ASSERT): the waiting
//     frames would otherwise touch freed memory.
#pragma once

#include <cstddef>

#include <palitra/detail/waiter_list.hpp>
#include <palitra/task.hpp>

namespace palitra {

namespace detail {
struct event_wait_op;
struct mutex_lock_op;
struct semaphore_acquire_op;
} // namespace detail

/// A flag that tasks can wait for (asyncio.Event).
class event {
public:
  event() noexcept;
  ~event();
  event(const event&) = delete;
  event& operator=(const event&) = delete;

  /// Set the flag and wake every waiter (each resumes later, through the run
  /// queue, even if clear() follows at once). Idempotent.
  void set();
  /// Reset the flag; later wait() calls suspend again.
  void clear();
  /// The flag. Thread: any, but it is a plain read: off the loop only when
  /// the loop cannot be touching the object (e.g. after run() returned).
  bool is_set() const noexcept { return set_; }
  /// Wait until the flag is set; returns at once if it is.
  /// Cancel: yes (cancelled_error; a cancelled waiter leaves no trace).
  task<void> wait();

private:
  friend struct detail::event_wait_op;
  detail::sync_core core_;
  bool set_ = false;
};

class mutex;

/// Owns a locked mutex and unlocks it when destroyed. Move-only.
/// Thread: destroy it on the mutex's loop (it calls unlock(); elsewhere
/// unlock() throws, and a throw from this noexcept path is std::terminate).
class [[nodiscard]] mutex_guard {
public:
  mutex_guard() noexcept = default;
  mutex_guard(mutex_guard&& o) noexcept : m_(o.m_) { o.m_ = nullptr; }
  mutex_guard& operator=(mutex_guard&& o) noexcept;
  mutex_guard(const mutex_guard&) = delete;
  mutex_guard& operator=(const mutex_guard&) = delete;
  ~mutex_guard() { unlock(); }

  /// Unlock now (idempotent).
  void unlock() noexcept;
  bool owns_lock() const noexcept { return m_ != nullptr; }

private:
  friend class mutex;
  explicit mutex_guard(mutex& m) noexcept : m_(&m) {}
  mutex* m_ = nullptr;
};

/// A non-recursive lock for tasks of one loop (asyncio.Lock). Ownership is
/// not tied to a task: any task of the loop may unlock it.
class mutex {
public:
  mutex() noexcept;
  ~mutex();
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;

  /// Lock, waiting (FIFO) while it is held. Cancel: yes; a cancelled waiter
  /// never owns the lock (a hand-off to it passes on to the next waiter).
  task<void> lock();
  /// Lock if it is free and nobody waits; never suspends.
  bool try_lock();
  /// Unlock: the front waiter (if any) becomes the owner and is resumed
  /// through the run queue. Throws: palitra::error if it is not locked.
  void unlock();
  /// lock(), then a guard that unlocks. Cancel: as lock().
  task<mutex_guard> scoped();
  /// Thread: as event::is_set.
  bool locked() const noexcept { return locked_; }

private:
  friend struct detail::mutex_lock_op;
  void hand_off() noexcept;
  detail::sync_core core_;
  bool locked_ = false; // also while reserved for a granted waiter (I2)
};

/// A counter of units (asyncio.Semaphore). Throws: palitra::error for a
/// negative initial count.
class semaphore {
public:
  explicit semaphore(std::ptrdiff_t initial);
  ~semaphore();
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;

  /// Take a unit, waiting (FIFO) while there is none. Cancel: yes; a
  /// cancelled waiter never takes a unit.
  task<void> acquire();
  /// Take a unit if one is free and nobody waits; never suspends.
  bool try_acquire();
  /// Return `n` units: each goes to the front waiter, the rest to the count.
  /// Throws: palitra::error for n < 0.
  void release(std::ptrdiff_t n = 1);
  /// Free units (not reserved for a woken waiter). Thread: as event::is_set.
  std::ptrdiff_t available() const noexcept { return count_; }

private:
  friend struct detail::semaphore_acquire_op;
  void hand_off(std::ptrdiff_t n) noexcept;
  detail::sync_core core_;
  std::ptrdiff_t count_;
};

} // namespace palitra
