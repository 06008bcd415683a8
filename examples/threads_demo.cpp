// palitra demo: several ordinary threads call palitra::run at once; every
// coroutine runs on the one background loop, where state (here a counter and
// a "connection pool" stand-in) survives from one call to the next.
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include <palitra/palitra.hpp>

using namespace std::chrono_literals;

namespace {

// Lives on the loop: only ever touched by coroutines, so it needs no lock.
int calls_served = 0;

palitra::task<int> fetch_price(int item) {
  co_await palitra::sleep_for(1ms); // stands in for a network round trip
  ++calls_served;
  co_return item * 100;
}

palitra::task<int> basket_total(std::vector<int> items) {
  std::vector<palitra::task<int>> parts;
  for (int i : items) parts.push_back(fetch_price(i));
  int total = 0;
  for (int p : co_await palitra::when_all(std::move(parts))) total += p;
  co_return total;
}

} // namespace

int main() {
  std::vector<std::thread> workers;
  std::vector<int> totals(4);
  for (int t = 0; t < 4; ++t)
    workers.emplace_back([t, &totals] {
      // Synchronous code: blocks until the coroutine's result is back.
      totals[t] = palitra::run(basket_total({t, t + 1, t + 2}));
    });
  for (auto& w : workers) w.join();
  for (int t = 0; t < 4; ++t) std::printf("thread %d: basket total %d\n", t, totals[t]);

  // State on the loop outlived every call: read it with one more call.
  const int served = palitra::run([]() -> palitra::task<int> { co_return calls_served; });
  std::printf("calls served on the loop: %d\n", served);

  // A deadline cancels the coroutine on the loop, then throws here.
  try {
    palitra::run(fetch_price(7), 0ms);
  } catch (const palitra::timeout_error& e) {
    std::printf("timeout: %s\n", e.what());
  }

  const palitra::runner_stats s = palitra::global_runner().stats();
  std::printf("stats: submitted=%llu completed=%llu failed=%llu cancelled=%llu\n",
              static_cast<unsigned long long>(s.submitted),
              static_cast<unsigned long long>(s.completed),
              static_cast<unsigned long long>(s.failed),
              static_cast<unsigned long long>(s.cancelled));
  return served == 12 ? 0 : 1;
}
