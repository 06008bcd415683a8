// palitra bench — the instruction-count driver for callgrind.
//
// `palitra_cg --calls N [--threads T]` makes N palitra::runner::run() round
// trips of a trivial task from T caller threads (each does N / T) after a
// warm-up of 1,000 calls, and prints nothing else. Run it twice under
// callgrind with two call counts; the difference of the two totals divided by
// the difference of the counts is the instruction cost of one call, start-up
// and shutdown cancelled out (bench/callgrind.sh does exactly that). callgrind
// counts instructions, not time, so the figure repeats to the instruction
// from run to run on these machines whatever else they are doing, which makes
// it the number to compare a change by (bench/README.md, "Profile").
//
// Under valgrind only one thread runs at a time, so the yield phases behave
// as on one CPU: a caller's sched_yield hands the CPU to the loop.
//
// `--stats` (not for callgrind) also prints calls/s and, per call, the loop
// passes, wake-fd writes and caller wakes of the timed calls: a quick probe
// of one configuration outside the full palitra_bench run.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include <palitra/palitra.hpp>

namespace {

palitra::task<int> one() { co_return 1; }

bool flag(int argc, char** argv, const char* name) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return true;
  return false;
}

long arg(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::strtol(argv[i + 1], nullptr, 10);
  return fallback;
}

} // namespace

int main(int argc, char** argv) {
  const long calls = arg(argc, argv, "--calls", 10000);
  const long threads = arg(argc, argv, "--threads", 1);
  if (calls < 0 || threads < 1) {
    std::fprintf(stderr, "usage: palitra_cg --calls N [--threads T]\n");
    return 2;
  }
  palitra::runner r;
  long sum = 0;
  for (int i = 0; i < 1000; ++i) sum += r.run(one());
  const auto s0 = r.stats();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<long> sums(static_cast<std::size_t>(threads), 0);
  std::vector<std::thread> ts;
  for (long t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (long i = 0; i < calls / threads; ++i) sums[static_cast<std::size_t>(t)] += r.run(one());
    });
  for (auto& t : ts) t.join();
  const auto t1 = std::chrono::steady_clock::now();
  for (long s : sums) sum += s;
  if (flag(argc, argv, "--stats")) {
    const auto s1 = r.stats();
    const double n = static_cast<double>(calls / threads * threads);
    std::printf("threads %ld: %.0f calls/s; per call: loop passes %.3f, wake-fd writes %.3f, "
                "caller wakes %.3f\n",
                threads, n / std::chrono::duration<double>(t1 - t0).count(),
                static_cast<double>(s1.loop_iterations - s0.loop_iterations) / n,
                static_cast<double>(s1.loop_wakeups - s0.loop_wakeups) / n,
                static_cast<double>(s1.caller_wakes - s0.caller_wakes) / n);
  }
  if (sum != 1000 + calls / threads * threads) {
    std::fprintf(stderr, "palitra_cg: wrong sum %ld\n", sum);
    return 1;
  }
  return 0;
}
