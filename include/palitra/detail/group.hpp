// palitra — running several child tasks concurrently on the loop
// (when_all, when_any, gather, gather_settled).
//
// Each child runs as a chain of its own (cancel.hpp) whose parent is the
// awaiting chain. Loop thread only; no atomics.
//   start:   the parent chain arms itself with on_parent_cancel (its leaf is
//            this group), then each child is resumed in turn until its first
//            suspension. remaining_ starts at n+1 so that children finishing
//            during start cannot resume the parent inside its await_suspend;
//            the start releases the extra unit and suspends only if some
//            child is still running.
//   child_done (a child's final_suspend): the first failure (policy all) or
//            the first completion (policy any) *decides* the group and
//            cancels every sibling; the last child to finish disarms the
//            parent chain and transfers to the parent.
//   parent cancelled: every child is cancelled; the group still waits for
//            all of them (structured: no child outlives the await).
// Invariant G1: the parent resumes exactly once, after every child ended.
#pragma once

#include <array>
#include <coroutine>
#include <optional>
#include <variant>
#include <cstddef>
#include <limits>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <palitra/detail/cancel.hpp>
#include <palitra/detail/loop_hooks.hpp>
#include <palitra/outcome.hpp>
#include <palitra/task.hpp>

namespace palitra::detail {

enum class group_policy : unsigned char { all, settled, any };

class group_base {
public:
  static constexpr std::size_t none = std::numeric_limits<std::size_t>::max();

  struct child final : task_waiter {
    group_base* group = nullptr;
    std::coroutine_handle<> frame;
    promise_base* promise = nullptr;
    cancel_state chain;
    std::size_t index = 0;
    std::coroutine_handle<> on_task_done() noexcept override {
      return group->child_done(*this);
    }
  };

  group_base(const group_base&) = delete;
  group_base& operator=(const group_base&) = delete;

  /// Index of the child that decided the group (first failure for `all`,
  /// first completion for `any`), or `none`.
  std::size_t decider() const noexcept { return decider_; }
  /// True if the awaiting chain was cancelled while the group ran (then at
  /// least one child was still running and was cancelled).
  bool cancelled_from_outside() const noexcept { return parent_cancelled_; }

protected:
  explicit group_base(group_policy p) noexcept : policy_(p) {}

  template <class P>
  bool start(std::coroutine_handle<P> parent, child* children, std::size_t n) {
    children_ = children;
    n_ = n;
    parent_ = parent;
    if constexpr (std::is_base_of_v<promise_base, P>)
      parent_chain_ = parent.promise().chain_;
    remaining_ = n + 1;
    if (parent_chain_ != nullptr) parent_chain_->arm(&on_parent_cancel, this);
    for (std::size_t i = 0; i < n; ++i) {
      child& c = children[i];
      c.group = this;
      c.index = i;
      c.chain.set_parent(parent_chain_);
      c.promise->waiter_ = &c;
      c.promise->chain_ = &c.chain;
      set_current_chain(&c.chain);
      c.frame.resume();
    }
    set_current_chain(parent_chain_);
    if (--remaining_ == 0) {
      if (parent_chain_ != nullptr) parent_chain_->disarm();
      return false; // everything finished synchronously: do not suspend
    }
    return true;
  }

private:
  std::coroutine_handle<> child_done(child& c) noexcept {
    if (decider_ == none) {
      const bool decides = policy_ == group_policy::any ||
                           (policy_ == group_policy::all && c.promise->failed());
      if (decides) {
        decider_ = c.index;
        cancel_children(c.index);
      }
    }
    if (--remaining_ != 0) return std::noop_coroutine();
    if (parent_chain_ != nullptr) parent_chain_->disarm();
    set_current_chain(parent_chain_);
    return parent_;
  }

  void cancel_children(std::size_t except) noexcept {
    for (std::size_t i = 0; i < n_; ++i)
      if (i != except) children_[i].chain.deliver();
  }

  static void on_parent_cancel(void* self) noexcept {
    auto* g = static_cast<group_base*>(self);
    g->parent_cancelled_ = true;
    g->cancel_children(none);
  }

  group_policy policy_;
  child* children_ = nullptr;
  std::size_t n_ = 0;
  std::size_t remaining_ = 0;
  std::size_t decider_ = none;
  bool parent_cancelled_ = false;
  std::coroutine_handle<> parent_;
  cancel_state* parent_chain_ = nullptr;
};

template <class T> void bind_child(group_base::child& c, task<T>& t) {
  auto h = task_access::handle(t);
  c.frame = h;
  c.promise = &h.promise();
}

/// when_all / gather / when_any over a fixed set of tasks.
template <group_policy Policy, class... T>
class tuple_group final : public group_base {
public:
  explicit tuple_group(task<T>&&... ts)
      : group_base(Policy), tasks_(std::move(ts)...) {
    std::apply([this](auto&... t) {
      std::size_t i = 0;
      (bind_child(children_[i++], t), ...);
    }, tasks_);
  }
  bool await_ready() const noexcept { return sizeof...(T) == 0; }
  template <class P> bool await_suspend(std::coroutine_handle<P> parent) {
    return this->start(parent, children_.data(), sizeof...(T));
  }
  auto await_resume() {
    if constexpr (Policy == group_policy::all) {
      if (decider() != none)
        std::rethrow_exception(children_[decider()].promise->exception());
      return std::apply([](auto&... t) {
        return std::tuple<result_t<T>...>(
            task_access::handle(t).promise().take_result()...);
      }, tasks_);
    } else {
      static_assert(Policy == group_policy::any);
      return take_winner(std::index_sequence_for<T...>{});
    }
  }

private:
  template <std::size_t... I> auto take_winner(std::index_sequence<I...>) {
    using variant = std::variant<result_t<T>...>;
    std::optional<variant> out;
    ((decider() == I
          ? (void)out.emplace(std::in_place_index<I>,
                              task_access::handle(std::get<I>(tasks_)).promise().take_result())
          : (void)0),
     ...);
    return std::move(*out);
  }

  std::tuple<task<T>...> tasks_;
  std::array<child, sizeof...(T)> children_{};
};

/// when_all / gather / gather_settled / when_any over a vector of tasks.
template <group_policy Policy, class T> class vector_group final : public group_base {
public:
  explicit vector_group(std::vector<task<T>>&& ts)
      : group_base(Policy), tasks_(std::move(ts)), children_(tasks_.size()) {
    for (std::size_t i = 0; i < tasks_.size(); ++i) bind_child(children_[i], tasks_[i]);
  }
  bool await_ready() const noexcept { return tasks_.empty(); }
  template <class P> bool await_suspend(std::coroutine_handle<P> parent) {
    return this->start(parent, children_.data(), children_.size());
  }
  auto await_resume() {
    if constexpr (Policy == group_policy::all) {
      if (decider() != none)
        std::rethrow_exception(children_[decider()].promise->exception());
      std::vector<result_t<T>> out;
      out.reserve(tasks_.size());
      for (auto& t : tasks_) out.push_back(task_access::handle(t).promise().take_result());
      return out;
    } else if constexpr (Policy == group_policy::settled) {
      // Settled never throws for a child's failure, but a cancellation of
      // the whole group (a timeout around it, close) is the group's own
      // outcome: wait_for(gather(..., return_exceptions=True)) raises too.
      if (cancelled_from_outside()) throw_cancelled("palitra::when_all_settled");
      std::vector<outcome<T>> out;
      out.reserve(tasks_.size());
      for (auto& t : tasks_) {
        auto& p = task_access::handle(t).promise();
        if (p.failed())
          out.emplace_back(p.exception());
        else
          out.emplace_back(p.take_result());
      }
      return out;
    } else {
      static_assert(Policy == group_policy::any);
      if (tasks_.empty())
        throw error("palitra::when_any: called with no tasks; pass at least one");
      const std::size_t w = decider();
      return std::pair<std::size_t, result_t<T>>(
          w, task_access::handle(tasks_[w]).promise().take_result());
    }
  }

private:
  std::vector<task<T>> tasks_;
  std::vector<child> children_;
};

} // namespace palitra::detail
