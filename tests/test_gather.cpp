// gather / gather_settled (runner members and the global free functions) and
// the awaitables they are built on: when_all, when_all_settled, when_any,
// with_timeout, sleep_for / sleep_until, yield; cancellation propagating into
// awaited children.
//
// Coroutines record what happened in an event_log on the loop thread; the
// test thread reads it only after the blocking call that ran them returned
// or threw (the completion slot's publish orders every loop-side write
// before that). Nothing here asserts a duration except "not earlier than the
// deadline".
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using palitra_test::watchdog;
using clk = std::chrono::steady_clock;

namespace {

using palitra_test::custom_error;
using palitra_test::event_log;
using palitra_test::marker;
using palitra_test::probe;
using palitra_test::sleeper;
using palitra_test::void_sleeper;
using palitra_test::counted_sleeper;

/// Position of `e` in `log`, or -1.
std::ptrdiff_t pos(const event_log& log, const std::string& e) {
  auto it = std::find(log.begin(), log.end(), e);
  return it == log.end() ? -1 : it - log.begin();
}

std::string log_text(const event_log& log) {
  std::string s;
  for (const auto& e : log) s += "[" + e + "] ";
  return s;
}

palitra::task<int> add(int a, int b) { co_return a + b; }
palitra::task<void> nothing() { co_return; }
palitra::task<std::string> text(std::string s) {
  co_await palitra::yield();
  co_return s;
}
palitra::task<std::unique_ptr<int>> boxed(int v) {
  co_await palitra::yield();
  co_return std::make_unique<int>(v);
}

palitra::task<int> after_yields(int n, int v) {
  for (int i = 0; i < n; ++i) co_await palitra::yield();
  co_return v;
}

palitra::task<int> fail_after(int n, int code) {
  for (int i = 0; i < n; ++i) co_await palitra::yield();
  throw custom_error(code);
}

palitra::task<void> void_fail(int code) {
  co_await palitra::yield();
  throw custom_error(code);
}

/// Yields n times, logs "<name> done", returns v; logs cancellation.
palitra::task<int> yielder(marker m, int n, int v) {
  try {
    for (int i = 0; i < n; ++i) co_await palitra::yield();
  } catch (const palitra::cancelled_error&) {
    m.note("cancelled");
    throw;
  }
  m.note("done");
  co_return v;
}

/// Catches its cancellation and returns a value anyway.
palitra::task<int> stubborn(int v) {
  try {
    co_await palitra::sleep_for(10s);
  } catch (const palitra::cancelled_error&) {
    co_return v;
  }
  co_return -1;
}

} // namespace

// ---------------------------------------------------------------------------
// gather (runner member), variadic and vector
// ---------------------------------------------------------------------------

TEST_CASE("gather: variadic, mixed result types, void maps to monostate, empty is tuple<>",
          "[gather]") {
  watchdog w(30s);
  palitra::runner r;
  static_assert(std::is_same_v<decltype(r.gather(add(1, 2), nothing(), text("x"))),
                               std::tuple<int, std::monostate, std::string>>);
  static_assert(std::is_same_v<decltype(r.gather()), std::tuple<>>);

  auto [i, v, s, p] = r.gather(add(1, 2), nothing(), text("two"), boxed(4));
  REQUIRE(i == 3);
  REQUIRE(v == std::monostate{});
  REQUIRE(s == "two");
  REQUIRE(p != nullptr);
  REQUIRE(*p == 4);

  std::tuple<> none = r.gather();
  (void)none;

  auto one = r.gather(after_yields(3, 9));
  REQUIRE(std::get<0>(one) == 9);

  auto s2 = r.stats();
  palitra_test::require_quiet(s2);
  REQUIRE(s2.submitted == 3); // each gather is one top-level call
  REQUIRE(s2.completed == 3);
}

TEST_CASE("gather: a vector's results come back in input order, not completion order",
          "[gather]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  std::vector<palitra::task<int>> ts;
  constexpr int n = 10;
  // Task i yields n - i times: they finish in reverse order.
  for (int i = 0; i < n; ++i) ts.push_back(yielder(marker(log, "t" + std::to_string(i)), n - i, i * 10));
  std::vector<int> out = r.gather(std::move(ts));
  REQUIRE(out.size() == n);
  for (int i = 0; i < n; ++i) REQUIRE(out[static_cast<std::size_t>(i)] == i * 10);
  // Completion order really was reversed (so the order above is not luck).
  INFO(log_text(log));
  for (int i = 1; i < n; ++i)
    REQUIRE(pos(log, "t" + std::to_string(i) + " done") < pos(log, "t" + std::to_string(i - 1) + " done"));

  std::vector<palitra::task<int>> empty;
  std::vector<int> none = r.gather(std::move(empty));
  REQUIRE(none.empty());

  std::vector<palitra::task<void>> voids;
  for (int i = 0; i < 3; ++i) voids.push_back(nothing());
  std::vector<std::monostate> vs = r.gather(std::move(voids));
  REQUIRE(vs.size() == 3);

  palitra_test::require_quiet(r.stats());
  REQUIRE(r.stats().submitted == 3);
}

TEST_CASE("gather: 500 tasks, suspending and finishing synchronously", "[gather][scale]") {
  watchdog w(30s);
  palitra::runner r;
  std::vector<palitra::task<int>> ts;
  for (int i = 0; i < 500; ++i) ts.push_back(after_yields(i % 4, i));
  auto out = r.gather(std::move(ts));
  REQUIRE(out.size() == 500);
  bool in_order = true;
  for (int i = 0; i < 500; ++i) in_order = in_order && out[static_cast<std::size_t>(i)] == i;
  REQUIRE(in_order);

  // None suspends: the group completes inside its own start.
  std::vector<palitra::task<int>> sync;
  for (int i = 0; i < 500; ++i) sync.push_back(add(i, 1));
  auto out2 = r.gather(std::move(sync));
  REQUIRE(out2.size() == 500);
  REQUIRE(out2.front() == 1);
  REQUIRE(out2.back() == 500);
  palitra_test::require_quiet(r.stats());
  REQUIRE(r.stats().submitted == 2);
}

namespace {
palitra::task<int> nested_inner(int k) {
  auto [a, b] = co_await palitra::when_all(add(k, 1), after_yields(2, k));
  std::vector<palitra::task<int>> vs;
  for (int j = 0; j < 3; ++j) vs.push_back(after_yields(j, j));
  std::vector<int> v = co_await palitra::when_all(std::move(vs));
  co_return a + b + v[0] + v[1] + v[2]; // 2k + 1 + 3
}

palitra::task<int> nested_failing(int k, marker m) {
  // The inner group fails; the outer gather must cancel its other children.
  auto [a, b] = co_await palitra::when_all(sleeper(std::move(m)), fail_after(2, k));
  co_return a + b;
}
} // namespace

TEST_CASE("gather: nested groups (when_all inside tasks inside gather)", "[gather]") {
  watchdog w(30s);
  palitra::runner r;
  std::vector<palitra::task<int>> ts;
  for (int k = 0; k < 8; ++k) ts.push_back(nested_inner(k));
  auto out = r.gather(std::move(ts));
  for (int k = 0; k < 8; ++k) REQUIRE(out[static_cast<std::size_t>(k)] == 2 * k + 4);

  // A failure deep inside propagates out; every sibling at every level ends.
  event_log log;
  try {
    r.gather(nested_failing(5, marker(log, "inner")), sleeper(marker(log, "outer")));
    FAIL("no exception");
  } catch (const custom_error& e) {
    REQUIRE(e.code == 5);
  }
  INFO(log_text(log));
  REQUIRE(pos(log, "inner cancelled") >= 0);
  REQUIRE(pos(log, "inner destroyed") >= 0);
  REQUIRE(pos(log, "outer cancelled") >= 0);
  REQUIRE(pos(log, "outer destroyed") >= 0);
  palitra_test::require_quiet(r.stats());
}

TEST_CASE("gather: the first failure in time (not in position) is rethrown after the siblings "
          "were cancelled and destroyed",
          "[gather][cancel]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  std::atomic<int> alive{0};
  try {
    // Position 0 would fail later (after 3 yields); position 1 fails first.
    r.gather(fail_after(3, 1), fail_after(1, 2), sleeper(marker(log, "c")),
             counted_sleeper(probe(alive)), yielder(marker(log, "d"), 100, 0));
    FAIL("no exception");
  } catch (const custom_error& e) {
    REQUIRE(e.code == 2);
  }
  INFO(log_text(log));
  REQUIRE(alive == 0);
  REQUIRE(pos(log, "c cancelled") >= 0);
  REQUIRE(pos(log, "c cancelled") < pos(log, "c destroyed"));
  REQUIRE(pos(log, "d cancelled") >= 0);
  REQUIRE(pos(log, "d cancelled") < pos(log, "d destroyed"));
  REQUIRE(pos(log, "d done") == -1);
  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.failed == 1);
}

namespace {
/// Converts its cancellation into another exception: the group must still
/// rethrow the first failure, not this one.
palitra::task<int> converts_cancel(marker m) {
  try {
    co_await palitra::sleep_for(10s);
  } catch (const palitra::cancelled_error&) {
    m.note("cancelled");
    throw std::logic_error("converted");
  }
  co_return 0;
}
} // namespace

TEST_CASE("when_all in a coroutine: siblings end and their frames are destroyed before the "
          "failure reaches the awaiter",
          "[gather][when_all][cancel]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  int caught = 0;
  r.run([&]() -> palitra::task<void> {
    try {
      co_await palitra::when_all(sleeper(marker(log, "a")), fail_after(2, 7),
                                 converts_cancel(marker(log, "b")), yielder(marker(log, "c"), 50, 1));
    } catch (const custom_error& e) {
      caught = e.code;
      log.push_back("caught");
    }
    // A failure decided before later siblings even started: they still run
    // to their first cancellation point and are awaited.
    try {
      co_await palitra::when_all(fail_after(0, 8), sleeper(marker(log, "late")));
    } catch (const custom_error& e) {
      caught += e.code * 100;
      log.push_back("caught late");
    }
  });
  INFO(log_text(log));
  REQUIRE(caught == 7 + 800);
  for (const char* n : {"a", "b", "c"}) {
    const std::string name(n);
    REQUIRE(pos(log, name + " cancelled") >= 0);
    REQUIRE(pos(log, name + " cancelled") < pos(log, name + " destroyed"));
    REQUIRE(pos(log, name + " destroyed") < pos(log, "caught"));
  }
  REQUIRE(pos(log, "late cancelled") >= 0);
  REQUIRE(pos(log, "late destroyed") < pos(log, "caught late"));
  palitra_test::require_quiet(r.stats());
}

TEST_CASE("gather with a trailing timeout: timeout_error for the whole group, every frame gone",
          "[gather][timeout]") {
  watchdog w(30s);
  palitra::runner r;
  std::atomic<int> alive{0};
  auto t0 = clk::now();
  REQUIRE_THROWS_AS(r.gather(counted_sleeper(probe(alive)), counted_sleeper(probe(alive)),
                             add(1, 2), 20ms),
                    palitra::timeout_error);
  REQUIRE(clk::now() - t0 >= 20ms); // never early
  REQUIRE(alive == 0);

  std::vector<palitra::task<int>> ts;
  for (int i = 0; i < 5; ++i) ts.push_back(counted_sleeper(probe(alive)));
  ts.push_back(add(1, 1));
  t0 = clk::now();
  REQUIRE_THROWS_AS(r.gather(std::move(ts), 10ms), palitra::timeout_error);
  REQUIRE(clk::now() - t0 >= 10ms);
  REQUIRE(alive == 0);

  // Finishing first returns the values; any duration type works.
  auto [a, b] = r.gather(add(1, 2), after_yields(3, 4), 10s);
  REQUIRE(a == 3);
  REQUIRE(b == 4);
  std::vector<palitra::task<int>> quick;
  quick.push_back(after_yields(1, 5));
  quick.push_back(add(3, 3));
  REQUIRE(r.gather(std::move(quick), std::chrono::duration<double>(5.0)) == std::vector<int>{5, 6});
  // Children that catch the cancellation and return values: the group has a
  // value, which is returned (as run() does).
  auto [c, d] = r.gather(stubborn(77), add(1, 1), 5ms);
  REQUIRE(c == 77);
  REQUIRE(d == 2);

  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.cancelled == 2);
  REQUIRE(s.completed == 3);
}

// ---------------------------------------------------------------------------
// gather_settled
// ---------------------------------------------------------------------------

TEST_CASE("gather_settled: never throws for task failures; one outcome per task in order",
          "[gather][settled]") {
  watchdog w(30s);
  palitra::runner r;
  std::vector<palitra::task<int>> ts;
  ts.push_back(add(1, 2));
  ts.push_back(fail_after(1, 5));
  ts.push_back(after_yields(6, 9)); // ends after the failure: not cancelled
  ts.push_back(fail_after(0, 6));
  std::vector<palitra::outcome<int>> out = r.gather_settled(std::move(ts));
  REQUIRE(out.size() == 4);

  REQUIRE(out[0].has_value());
  REQUIRE(static_cast<bool>(out[0]));
  REQUIRE(out[0].value() == 3);
  REQUIRE(out[0].error() == nullptr);

  REQUIRE_FALSE(out[1].has_value());
  REQUIRE_FALSE(static_cast<bool>(out[1]));
  REQUIRE(out[1].error() != nullptr);
  try {
    (void)out[1].value();
    FAIL("value() did not rethrow");
  } catch (const custom_error& e) {
    REQUIRE(e.code == 5);
  }
  try {
    std::rethrow_exception(out[1].error());
  } catch (const custom_error& e) {
    REQUIRE(e.code == 5);
  }

  REQUIRE(out[2].has_value());
  REQUIRE(out[2].value() == 9);
  REQUIRE(std::move(out[2]).value() == 9);

  REQUIRE_FALSE(out[3].has_value());
  REQUIRE_THROWS_AS(out[3].value(), custom_error);

  // outcome<void>
  std::vector<palitra::task<void>> vs;
  vs.push_back(nothing());
  vs.push_back(void_fail(3));
  std::vector<palitra::outcome<void>> vo = r.gather_settled(std::move(vs));
  REQUIRE(vo.size() == 2);
  REQUIRE(vo[0].has_value());
  REQUIRE(vo[0].value() == std::monostate{});
  REQUIRE_FALSE(vo[1].has_value());
  REQUIRE_THROWS_AS(vo[1].value(), custom_error);

  std::vector<palitra::task<int>> empty;
  REQUIRE(r.gather_settled(std::move(empty)).empty());

  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.completed == 3);
  REQUIRE(s.failed == 0);
}

TEST_CASE("gather_settled with a timeout throws timeout_error for the whole group",
          "[gather][settled][timeout]") {
  watchdog w(30s);
  palitra::runner r;
  std::atomic<int> alive{0};
  std::vector<palitra::task<int>> ts;
  ts.push_back(add(1, 2));
  ts.push_back(counted_sleeper(probe(alive)));
  ts.push_back(fail_after(0, 1));
  ts.push_back(counted_sleeper(probe(alive)));
  const auto t0 = clk::now();
  bool timed_out = false;
  std::size_t got = 0;
  try {
    got = r.gather_settled(std::move(ts), 20ms).size();
  } catch (const palitra::timeout_error&) {
    timed_out = true;
  }
  INFO("gather_settled returned " << got << " outcomes instead of throwing");
  REQUIRE(timed_out);
  REQUIRE(clk::now() - t0 >= 20ms);
  REQUIRE(alive == 0); // every task cancelled and awaited
  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.cancelled == 1);
}

TEST_CASE("when_all_settled: a cancelled awaiter gets cancelled_error from the co_await",
          "[when_all][settled][cancel]") {
  watchdog w(30s);
  palitra::runner r;
  std::atomic<int> alive{0};
  bool saw_cancel = false;
  std::size_t outcomes = 0;
  auto body = [&]() -> palitra::task<int> {
    std::vector<palitra::task<int>> ts;
    ts.push_back(counted_sleeper(probe(alive)));
    ts.push_back(add(1, 1));
    try {
      outcomes = (co_await palitra::when_all_settled(std::move(ts))).size();
    } catch (const palitra::cancelled_error&) {
      saw_cancel = true;
      throw;
    }
    co_return 1; // reached only if the cancellation was swallowed
  };
  bool timed_out = false;
  try {
    (void)r.run(body(), 10ms);
  } catch (const palitra::timeout_error&) {
    timed_out = true;
  }
  INFO("when_all_settled returned " << outcomes << " outcomes to a cancelled coroutine");
  REQUIRE(alive == 0);
  REQUIRE(saw_cancel);
  REQUIRE(timed_out);
}

TEST_CASE("gather_settled with a timeout returns the outcomes when the group finishes first",
          "[gather][settled][timeout]") {
  watchdog w(30s);
  palitra::runner r;
  std::vector<palitra::task<int>> ts;
  ts.push_back(after_yields(2, 1));
  ts.push_back(fail_after(1, 2));
  auto out = r.gather_settled(std::move(ts), 10s);
  REQUIRE(out.size() == 2);
  REQUIRE(out[0].value() == 1);
  REQUIRE_THROWS_AS(out[1].value(), custom_error);
  palitra_test::require_quiet(r.stats());
}

// ---------------------------------------------------------------------------
// when_all / when_all_settled / when_any inside coroutines
// ---------------------------------------------------------------------------

TEST_CASE("when_all and when_all_settled inside a coroutine", "[when_all]") {
  watchdog w(30s);
  palitra::runner r;
  auto body = []() -> palitra::task<int> {
    auto [a, b, c] = co_await palitra::when_all(add(1, 2), nothing(), boxed(5));
    static_assert(std::is_same_v<decltype(b), std::monostate>);
    std::tuple<> e = co_await palitra::when_all();
    (void)e;
    std::vector<palitra::task<int>> vs;
    for (int i = 0; i < 4; ++i) vs.push_back(after_yields(4 - i, i));
    std::vector<int> v = co_await palitra::when_all(std::move(vs));
    std::vector<palitra::task<int>> ss;
    ss.push_back(add(10, 0));
    ss.push_back(fail_after(1, 4));
    ss.push_back(after_yields(3, 20));
    std::vector<palitra::outcome<int>> o = co_await palitra::when_all_settled(std::move(ss));
    int failures = 0;
    for (auto& x : o) failures += x.has_value() ? 0 : 1;
    co_return a + *c + v[0] + v[1] * 10 + v[2] * 100 + v[3] * 1000 + o[0].value() + o[2].value() +
        failures * 10000;
  };
  REQUIRE(r.run(body) == 3 + 5 + 0 + 10 + 200 + 3000 + 10 + 20 + 10000);
  palitra_test::require_quiet(r.stats());
}

TEST_CASE("when_any (variadic): the variant index is the winner; losers are cancelled and "
          "awaited; the winner's exception is rethrown",
          "[when_any]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  std::size_t idx = 99;
  int val = 0;
  std::size_t idx2 = 99, idx3 = 99;
  std::string s;
  int thrown = 0;
  r.run([&]() -> palitra::task<void> {
    // Same types: only the index tells the winner apart.
    auto v = co_await palitra::when_any(sleeper(marker(log, "a")), yielder(marker(log, "b"), 2, 7),
                                        yielder(marker(log, "c"), 4, 8));
    log.push_back("resumed 1");
    idx = v.index();
    val = std::get<1>(v);

    // A winner that finishes during the start; the loser after it starts
    // anyway and is cancelled at its first cancellation point.
    auto v2 = co_await palitra::when_any(text("x"), void_sleeper(marker(log, "e")));
    log.push_back("resumed 2");
    idx2 = v2.index();
    s = std::get<0>(v2);
    auto v3 = co_await palitra::when_any(void_sleeper(marker(log, "f")), nothing());
    idx3 = v3.index();
    log.push_back("resumed 3");

    try {
      co_await palitra::when_any(sleeper(marker(log, "g")), fail_after(1, 4));
    } catch (const custom_error& e) {
      thrown = e.code;
      log.push_back("caught 4");
    }
  });
  INFO(log_text(log));
  REQUIRE(idx == 1);
  REQUIRE(val == 7);
  REQUIRE(pos(log, "b done") >= 0);
  REQUIRE(pos(log, "c done") == -1);
  for (const char* n : {"a", "c"}) {
    const std::string name(n);
    REQUIRE(pos(log, name + " cancelled") >= 0);
    REQUIRE(pos(log, name + " destroyed") < pos(log, "resumed 1"));
  }
  REQUIRE(idx2 == 0);
  REQUIRE(s == "x");
  REQUIRE(pos(log, "e cancelled") >= 0);
  REQUIRE(pos(log, "e destroyed") < pos(log, "resumed 2"));
  REQUIRE(idx3 == 1);
  REQUIRE(pos(log, "f cancelled") >= 0);
  REQUIRE(pos(log, "f destroyed") < pos(log, "resumed 3"));
  REQUIRE(thrown == 4);
  REQUIRE(pos(log, "g cancelled") >= 0);
  REQUIRE(pos(log, "g destroyed") < pos(log, "caught 4"));
  palitra_test::require_quiet(r.stats());
}

TEST_CASE("when_any (vector): returns {index, value}; losers cancelled; empty throws",
          "[when_any]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  std::pair<std::size_t, int> got{99, 0};
  std::size_t void_idx = 99;
  bool empty_threw = false;
  r.run([&]() -> palitra::task<void> {
    std::vector<palitra::task<int>> ts;
    ts.push_back(sleeper(marker(log, "s0")));
    ts.push_back(yielder(marker(log, "y1"), 3, 30));
    ts.push_back(yielder(marker(log, "y2"), 1, 10));
    ts.push_back(sleeper(marker(log, "s3")));
    got = co_await palitra::when_any(std::move(ts));
    log.push_back("resumed");

    std::vector<palitra::task<void>> vs;
    vs.push_back(void_sleeper(marker(log, "v0")));
    vs.push_back(nothing());
    std::pair<std::size_t, std::monostate> vr = co_await palitra::when_any(std::move(vs));
    void_idx = vr.first;

    try {
      co_await palitra::when_any(std::vector<palitra::task<int>>{});
    } catch (const palitra::error&) {
      empty_threw = true;
    }
  });
  INFO(log_text(log));
  REQUIRE(got.first == 2);
  REQUIRE(got.second == 10);
  for (const char* n : {"s0", "y1", "s3"}) {
    const std::string name(n);
    REQUIRE(pos(log, name + " cancelled") >= 0);
    REQUIRE(pos(log, name + " destroyed") < pos(log, "resumed"));
  }
  REQUIRE(void_idx == 1);
  REQUIRE(pos(log, "v0 destroyed") >= 0);
  REQUIRE(empty_threw);
  palitra_test::require_quiet(r.stats());
}

// ---------------------------------------------------------------------------
// with_timeout
// ---------------------------------------------------------------------------

TEST_CASE("with_timeout: timeout_error after the inner frame is destroyed; values and errors "
          "that come first stand",
          "[with_timeout][timeout]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  std::chrono::nanoseconds waited{};
  std::vector<int> values;
  int inner_error = 0;
  int zero_timeouts = 0;
  r.run([&]() -> palitra::task<void> {
    const auto t0 = clk::now();
    try {
      co_await palitra::with_timeout(sleeper(marker(log, "inner")), 20ms);
      log.push_back("no timeout");
    } catch (const palitra::timeout_error&) {
      waited = clk::now() - t0;
      log.push_back("caught timeout");
    }
    values.push_back(co_await palitra::with_timeout(add(1, 2), 10s));          // synchronous
    values.push_back(co_await palitra::with_timeout(after_yields(3, 5), 10s)); // suspends
    values.push_back(co_await palitra::with_timeout(
        []() -> palitra::task<int> {
          co_await palitra::sleep_for(1ms);
          co_return 6;
        }(),
        std::chrono::duration<double>(10.0)));
    co_await palitra::with_timeout(nothing(), 1s);
    // The inner value published after the cancellation was requested is kept.
    values.push_back(co_await palitra::with_timeout(stubborn(77), 5ms));
    try {
      co_await palitra::with_timeout(fail_after(1, 3), 10s);
    } catch (const custom_error& e) {
      inner_error = e.code;
    }
    // Non-positive: already expired, the task still starts.
    values.push_back(co_await palitra::with_timeout(add(2, 2), 0ms));
    values.push_back(co_await palitra::with_timeout(add(2, 3), -5ms));
    try {
      co_await palitra::with_timeout(sleeper(marker(log, "zero")), 0ms);
    } catch (const palitra::timeout_error&) {
      ++zero_timeouts;
    }
  });
  INFO(log_text(log));
  REQUIRE(waited >= 20ms);
  REQUIRE(pos(log, "inner cancelled") >= 0);
  REQUIRE(pos(log, "inner cancelled") < pos(log, "inner destroyed"));
  REQUIRE(pos(log, "inner destroyed") < pos(log, "caught timeout"));
  REQUIRE(pos(log, "no timeout") == -1);
  REQUIRE(values == std::vector<int>{3, 5, 6, 77, 4, 5});
  REQUIRE(inner_error == 3);
  REQUIRE(zero_timeouts == 1);
  REQUIRE(pos(log, "zero destroyed") >= 0);
  palitra_test::require_quiet(r.stats());
}

namespace {
palitra::task<int> catches_timeout(palitra::task<int> t) {
  try {
    co_return co_await std::move(t);
  } catch (const palitra::timeout_error&) {
    co_return -100;
  }
}
} // namespace

TEST_CASE("with_timeout nested: whichever deadline passes first throws timeout_error",
          "[with_timeout][timeout]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  int inner_first = 0, outer_first = 0, caught_inside = 0;
  r.run([&]() -> palitra::task<void> {
    try {
      co_await palitra::with_timeout(palitra::with_timeout(sleeper(marker(log, "a")), 5ms), 10s);
    } catch (const palitra::timeout_error&) {
      ++inner_first;
      log.push_back("caught a");
    }
    try {
      co_await palitra::with_timeout(palitra::with_timeout(sleeper(marker(log, "b")), 10s), 5ms);
    } catch (const palitra::timeout_error&) {
      ++outer_first;
      log.push_back("caught b");
    }
    // The inner timeout is handled inside the outer scope; the outer one
    // still has time left and returns the handler's value.
    caught_inside = co_await palitra::with_timeout(
        catches_timeout(palitra::with_timeout(sleeper(marker(log, "c")), 5ms)), 10s);
  });
  INFO(log_text(log));
  REQUIRE(inner_first == 1);
  REQUIRE(outer_first == 1);
  REQUIRE(caught_inside == -100);
  for (const char* n : {"a", "b"}) {
    const std::string name(n);
    REQUIRE(pos(log, name + " cancelled") >= 0);
    REQUIRE(pos(log, name + " destroyed") < pos(log, "caught " + name));
  }
  REQUIRE(pos(log, "c destroyed") >= 0);
  palitra_test::require_quiet(r.stats());
}

TEST_CASE("with_timeout: an outer cancellation reaches the inner task and arrives as "
          "cancelled_error, not timeout_error",
          "[with_timeout][cancel]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  auto middle = [&log]() -> palitra::task<int> {
    try {
      co_return co_await palitra::with_timeout(sleeper(marker(log, "inner")), 10s);
    } catch (const palitra::timeout_error&) {
      log.push_back("middle saw timeout_error");
      throw;
    } catch (const palitra::cancelled_error&) {
      log.push_back("middle saw cancelled_error");
      throw;
    }
  };
  const auto t0 = clk::now();
  REQUIRE_THROWS_AS(r.run(middle(), 20ms), palitra::timeout_error);
  REQUIRE(clk::now() - t0 >= 20ms);
  {
    INFO(log_text(log));
    REQUIRE(pos(log, "inner cancelled") >= 0);
    REQUIRE(pos(log, "inner destroyed") < pos(log, "middle saw cancelled_error"));
    REQUIRE(pos(log, "middle saw timeout_error") == -1);
  }

  // Cancelled by a group sibling's failure instead of a root timeout.
  log.clear();
  REQUIRE_THROWS_AS(r.gather(middle(), fail_after(2, 1)), custom_error);
  INFO(log_text(log));
  REQUIRE(pos(log, "inner cancelled") >= 0);
  REQUIRE(pos(log, "middle saw cancelled_error") >= 0);
  palitra_test::require_quiet(r.stats());
}

// ---------------------------------------------------------------------------
// cancellation into awaited children
// ---------------------------------------------------------------------------

namespace {
palitra::task<int> chain(int depth, probe p, event_log& log) {
  if (depth == 0) {
    try {
      co_await palitra::sleep_for(10s);
    } catch (const palitra::cancelled_error&) {
      log.push_back("leaf cancelled");
      throw;
    }
    co_return 0;
  }
  const int below = co_await chain(depth - 1, p, log);
  log.push_back("level resumed normally"); // never: the leaf throws
  co_return below + 1;
}
} // namespace

TEST_CASE("cancellation propagates down a deep chain of awaits to the leaf sleep",
          "[cancel][deep]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  std::atomic<int> alive{0};
  const auto t0 = clk::now();
  REQUIRE_THROWS_AS(r.run(chain(200, probe(alive), log), 10ms), palitra::timeout_error);
  REQUIRE(clk::now() - t0 >= 10ms);
  REQUIRE(alive == 0); // all 201 frames destroyed
  REQUIRE(log == event_log{"leaf cancelled"});

  // The same chain as a group child, cancelled by its sibling's failure.
  log.clear();
  REQUIRE_THROWS_AS(r.gather(chain(50, probe(alive), log), fail_after(1, 9)), custom_error);
  REQUIRE(alive == 0);
  REQUIRE(log == event_log{"leaf cancelled"});

  // Inside a coroutine: the awaiting parent sees cancelled_error through
  // every level when its own root is cancelled.
  log.clear();
  bool parent_saw_cancel = false;
  auto parent = [&]() -> palitra::task<int> {
    try {
      co_return co_await chain(20, probe(alive), log);
    } catch (const palitra::cancelled_error&) {
      parent_saw_cancel = true;
      throw;
    }
  };
  REQUIRE_THROWS_AS(r.run(parent(), 5ms), palitra::timeout_error);
  REQUIRE(parent_saw_cancel);
  REQUIRE(alive == 0);
  auto s = r.stats();
  palitra_test::require_quiet(s);
  REQUIRE(s.cancelled == 2);
  REQUIRE(s.failed == 1);
}

// ---------------------------------------------------------------------------
// sleep_for / sleep_until / yield ordering
// ---------------------------------------------------------------------------

namespace {
palitra::task<void> wake_at(clk::time_point d, int id, std::vector<int>& order, int& early) {
  co_await palitra::sleep_until(d);
  if (clk::now() < d) ++early;
  order.push_back(id);
}
} // namespace

TEST_CASE("sleep_until: timers fire in deadline order, equal deadlines in arming order (FIFO)",
          "[time]") {
  watchdog w(30s);
  palitra::runner r;
  std::vector<int> order;
  int early = 0;
  // Deadline of task i: base + offs[i] * 2ms. Every timer is armed (during
  // the group's start, well before base) before any fires.
  const int offs[] = {5, 1, 4, 0, 3, 2, 1, 0, 5};
  r.run([&]() -> palitra::task<void> {
    const auto base = clk::now() + 100ms;
    std::vector<palitra::task<void>> ts;
    for (int i = 0; i < 9; ++i) ts.push_back(wake_at(base + offs[i] * 2ms, i, order, early));
    co_await palitra::when_all(std::move(ts));
  });
  REQUIRE(early == 0);
  REQUIRE(order == std::vector<int>{3, 7, 1, 6, 5, 4, 2, 0, 8});

  // 20 equal deadlines: FIFO.
  order.clear();
  r.run([&]() -> palitra::task<void> {
    const auto d = clk::now() + 30ms;
    std::vector<palitra::task<void>> ts;
    for (int i = 0; i < 20; ++i) ts.push_back(wake_at(d, i, order, early));
    co_await palitra::when_all(std::move(ts));
  });
  REQUIRE(early == 0);
  std::vector<int> fifo(20);
  for (int i = 0; i < 20; ++i) fifo[static_cast<std::size_t>(i)] = i;
  REQUIRE(order == fifo);
  palitra_test::require_quiet(r.stats());
}

TEST_CASE("sleep_for: never wakes before the deadline; zero and negative durations yield",
          "[time]") {
  watchdog w(30s);
  palitra::runner r;
  auto measure = []() -> palitra::task<bool> {
    bool ok = true;
    for (auto d : {1ms, 5ms, 12ms}) {
      const auto t0 = clk::now();
      co_await palitra::sleep_for(d);
      ok = ok && clk::now() - t0 >= d;
    }
    const auto t1 = clk::now();
    co_await palitra::sleep_for(std::chrono::microseconds(2500));
    ok = ok && clk::now() - t1 >= 2500us;
    const auto d = clk::now() + 3ms;
    co_await palitra::sleep_until(d);
    ok = ok && clk::now() >= d;
    co_return ok;
  };
  REQUIRE(r.run(measure));

  // sleep_for(0), sleep_for(-1ms) and sleep_until(past) take one FIFO turn,
  // exactly like yield(): two such tasks interleave.
  event_log log;
  auto turns = [&log](std::string name, int kind) -> palitra::task<void> {
    for (int i = 0; i < 3; ++i) {
      log.push_back(name + std::to_string(i));
      if (kind == 0) co_await palitra::sleep_for(0ms);
      else if (kind == 1) co_await palitra::sleep_for(-1ms);
      else co_await palitra::sleep_until(clk::now() - 1s);
    }
  };
  for (int kind = 0; kind < 3; ++kind) {
    log.clear();
    r.gather(turns("a", kind), turns("b", kind));
    REQUIRE(log == event_log{"a0", "b0", "a1", "b1", "a2", "b2"});
  }
  palitra_test::require_quiet(r.stats());
}

namespace {
palitra::task<void> turns_yield(event_log& log, std::string name, int n) {
  for (int i = 0; i < n; ++i) {
    log.push_back(name + std::to_string(i));
    co_await palitra::yield();
  }
}
} // namespace

TEST_CASE("yield: ready tasks take turns in FIFO order", "[time][yield]") {
  watchdog w(30s);
  palitra::runner r;
  event_log log;
  r.gather(turns_yield(log, "a", 4), turns_yield(log, "b", 4));
  REQUIRE(log == event_log{"a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3"});

  // Three tasks of different lengths: the shorter ones drop out, the order
  // of the rest is kept.
  log.clear();
  r.run([&]() -> palitra::task<void> {
    co_await palitra::when_all(turns_yield(log, "a", 3), turns_yield(log, "b", 1),
                               turns_yield(log, "c", 2));
  });
  REQUIRE(log == event_log{"a0", "b0", "c0", "a1", "c1", "a2"});
  palitra_test::require_quiet(r.stats());
}

// ---------------------------------------------------------------------------
// the global free functions
// ---------------------------------------------------------------------------

TEST_CASE("palitra::gather and palitra::gather_settled on the global runner",
          "[gather][global]") {
  watchdog w(30s);
  auto [a, b, c] = palitra::gather(add(1, 2), nothing(), text("g"));
  REQUIRE(a == 3);
  REQUIRE(b == std::monostate{});
  REQUIRE(c == "g");
  REQUIRE(palitra::is_runner_alive());
  std::tuple<> none = palitra::gather();
  (void)none;

  std::vector<palitra::task<int>> ts;
  for (int i = 0; i < 5; ++i) ts.push_back(after_yields(5 - i, i));
  REQUIRE(palitra::gather(std::move(ts)) == std::vector<int>{0, 1, 2, 3, 4});
  std::vector<palitra::task<int>> ts2;
  ts2.push_back(add(2, 2));
  REQUIRE(palitra::gather(std::move(ts2), 10s) == std::vector<int>{4});

  std::atomic<int> alive{0};
  REQUIRE_THROWS_AS(palitra::gather(counted_sleeper(probe(alive)), add(1, 1), 10ms),
                    palitra::timeout_error);
  REQUIRE(alive == 0);
  std::vector<palitra::task<int>> ts3;
  ts3.push_back(counted_sleeper(probe(alive)));
  REQUIRE_THROWS_AS(palitra::gather(std::move(ts3), 10ms), palitra::timeout_error);
  REQUIRE(alive == 0);
  REQUIRE_THROWS_AS(palitra::gather(add(1, 1), fail_after(1, 2)), custom_error);

  std::vector<palitra::task<int>> ss;
  ss.push_back(add(1, 1));
  ss.push_back(fail_after(1, 2));
  auto out = palitra::gather_settled(std::move(ss));
  REQUIRE(out.size() == 2);
  REQUIRE(out[0].value() == 2);
  REQUIRE_FALSE(out[1].has_value());
  std::vector<palitra::task<int>> ss2;
  ss2.push_back(after_yields(2, 8));
  auto out2 = palitra::gather_settled(std::move(ss2), 10s);
  REQUIRE(out2.at(0).value() == 8);

  auto s = palitra::global_runner().stats();
  palitra_test::require_quiet(s);
  palitra::shutdown_global_runner();
  REQUIRE_FALSE(palitra::is_runner_alive());
}
