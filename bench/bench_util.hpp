// palitra bench — helpers shared by the benchmark executables: statistics
// over rounds (NaN = "not measured"), number formatting for the Markdown
// tables and the CSV, facts about the machine for the header, process RSS,
// and running a measurement in a forked child so that it starts from a
// fresh heap.
#pragma once

#include <sched.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace palitra_bench {

constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();

/// Median of the measured values (NaN ignored); NaN if there are none.
inline double median(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return std::isnan(x); }), v.end());
  if (v.empty()) return nan_v;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 == 1 ? v[m] : (v[m - 1] + v[m]) / 2;
}

inline double min_of(const std::vector<double>& v) {
  double r = nan_v;
  for (double x : v)
    if (!std::isnan(x) && (std::isnan(r) || x < r)) r = x;
  return r;
}
inline double max_of(const std::vector<double>& v) {
  double r = nan_v;
  for (double x : v)
    if (!std::isnan(x) && (std::isnan(r) || x > r)) r = x;
  return r;
}

inline std::string fmt(const char* f, double v) {
  if (std::isnan(v)) return "—";
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}
inline std::string fmt_us(double v) {
  if (std::isnan(v)) return "—";
  return fmt(v < 10 ? "%.2f" : v < 100 ? "%.1f" : "%.0f", v);
}
/// 1.23M, 456k, 45.6k, 123.
inline std::string fmt_rate(double v) {
  if (std::isnan(v)) return "—";
  if (v >= 1e6) return fmt("%.2fM", v / 1e6);
  if (v >= 1e5) return fmt("%.0fk", v / 1e3);
  if (v >= 1e3) return fmt("%.1fk", v / 1e3);
  return fmt("%.0f", v);
}
/// An empty cell is "not measured".
inline std::string fmt_csv(double v) {
  if (std::isnan(v)) return "";
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

inline std::string read_cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto p = line.find(':');
      if (p != std::string::npos) return line.substr(p + 2);
    }
  }
  return "unknown";
}

/// The first three fields of /proc/loadavg: how busy the machine was.
inline std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  if (!(in >> a >> b >> c)) return "unknown";
  return a + " " + b + " " + c;
}

/// The CPUs this process may run on ("0,1"), and how many.
inline std::string affinity_cpus(int& count) {
  cpu_set_t set;
  CPU_ZERO(&set);
  count = 0;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return "?";
  std::string r;
  for (int i = 0; i < CPU_SETSIZE; ++i) {
    if (!CPU_ISSET(i, &set)) continue;
    ++count;
    if (!r.empty()) r += ',';
    r += std::to_string(i);
  }
  return r;
}

/// True if `key` is one of the comma-separated `list`; an empty list holds all.
inline bool listed(const std::string& list, const char* key) {
  return list.empty() || ("," + list + ",").find(std::string(",") + key + ",") != std::string::npos;
}

/// The value after option argv[i] (and moves i onto it); with none, prints
/// what is missing and calls usage(1).
template <class Usage>
const char* option_value(int argc, char** argv, int& i, const char* prog, Usage usage) {
  if (i + 1 >= argc) {
    std::fprintf(stderr, "%s: %s needs a value\n", prog, argv[i]);
    usage(1);
  }
  return argv[++i];
}

/// Indices of the systems whose key is in `only` (all when empty); exits
/// with a message when that selects nothing.
template <class Systems>
std::vector<std::size_t> select_systems(const Systems& systems, const std::string& only,
                                        const char* prog) {
  std::vector<std::size_t> selected;
  for (std::size_t i = 0; i < systems.size(); ++i)
    if (listed(only, systems[i].key)) selected.push_back(i);
  if (selected.empty()) {
    std::fprintf(stderr, "%s: --systems '%s' selects nothing\n", prog, only.c_str());
    std::exit(1);
  }
  return selected;
}

/// Interleaved rounds: each round runs every selected system once, and the
/// starting system rotates, so none always runs first or last.
/// fn(round, system index).
template <class F> void for_rounds(int rounds, const std::vector<std::size_t>& selected, F fn) {
  for (int r = 0; r < rounds; ++r)
    for (std::size_t j = 0; j < selected.size(); ++j)
      fn(r, selected[(j + static_cast<std::size_t>(r)) % selected.size()]);
}

/// The header lines every benchmark prints: date, machine, load average.
inline void print_machine() {
  char date[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  utsname u{};
  uname(&u);
  int n_aff = 0;
  const std::string cpus = affinity_cpus(n_aff);
  std::printf("- date: %s\n", date);
  std::printf("- machine: nproc %d (this process may run on CPUs %s; %ld online), kernel %s %s, "
              "cpu \"%s\"\n",
              n_aff, cpus.c_str(), sysconf(_SC_NPROCESSORS_ONLN), u.sysname, u.release,
              read_cpu_model().c_str());
  std::printf("- load average at start: %s (other work on the machine skews every row)\n",
              load_average().c_str());
}

/// The CSV body: one row per system and round (round = 1..N), then one per
/// system with round = "median". t[system][round]; key(i) names system i;
/// fields(sample&) lists pointers to its numbers in column order.
template <class Sample, class Key, class Fields>
void write_csv_rows(std::FILE* f, const std::vector<std::vector<Sample>>& t, Key key,
                    Fields fields) {
  auto row = [&](const std::string& round, const char* k, Sample s) {
    std::fprintf(f, "%s,%s", round.c_str(), k);
    for (double* v : fields(s)) std::fprintf(f, ",%s", fmt_csv(*v).c_str());
    std::fprintf(f, "\n");
  };
  for (std::size_t i = 0; i < t.size(); ++i)
    for (std::size_t r = 0; r < t[i].size(); ++r) row(std::to_string(r + 1), key(i), t[i][r]);
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (t[i].empty()) continue;
    Sample s;
    const std::vector<double*> out = fields(s);
    for (std::size_t k = 0; k < out.size(); ++k) {
      std::vector<double> v;
      for (Sample x : t[i]) v.push_back(*fields(x)[k]);
      *out[k] = median(std::move(v));
    }
    row("median", key(i), s);
  }
}

/// Resident set size of this process (/proc/self/statm), in bytes.
inline long rss_bytes() {
  std::ifstream in("/proc/self/statm");
  long size = 0, resident = 0;
  in >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

/// Runs `fn` (returning a trivially copyable R) in a forked child and returns
/// what it reported through a pipe; `ok` is false if the child died before
/// it wrote a whole R. Fork from a single-threaded parent only: a child
/// forked while other threads hold locks may deadlock on them.
template <class R, class F> R in_child(F fn, bool& ok) {
  static_assert(std::is_trivially_copyable_v<R>);
  ok = false;
  int p[2];
  if (pipe(p) != 0) return R{};
  std::fflush(nullptr); // the child must not flush the parent's buffers again
  const pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    const R r = fn();
    const char* b = reinterpret_cast<const char*>(&r);
    std::size_t left = sizeof r;
    while (left > 0) {
      const ssize_t k = write(p[1], b, left);
      if (k <= 0) break;
      b += k;
      left -= static_cast<std::size_t>(k);
    }
    _exit(0);
  }
  close(p[1]);
  R r{};
  char* b = reinterpret_cast<char*>(&r);
  std::size_t got = 0;
  while (pid > 0 && got < sizeof r) {
    const ssize_t k = read(p[0], b + got, sizeof r - got);
    if (k <= 0) break;
    got += static_cast<std::size_t>(k);
  }
  close(p[0]);
  int status = 0;
  if (pid > 0) waitpid(pid, &status, 0);
  ok = got == sizeof r;
  return ok ? r : R{};
}

} // namespace palitra_bench
