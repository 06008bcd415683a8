// palitra — a log-linear latency histogram (HdrHistogram-like, tiny):
// 8 sub-buckets per power of two of nanoseconds, so a reported percentile
// is the upper bound of a bucket no wider than 1/8 of its value.
// One writer (the loop thread), any number of readers: counters are
// atomics written with relaxed load+store (no RMW) and read relaxed; a
// snapshot may be slightly torn across buckets, which a percentile
// estimate tolerates.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>

namespace palitra::detail {

class latency_histogram {
public:
  static constexpr int sub_bits = 3; // 8 sub-buckets per octave
  static constexpr int buckets = (64 - sub_bits) << sub_bits;

  void record(std::chrono::nanoseconds d) noexcept {
    const std::uint64_t v = d.count() <= 0 ? 0 : static_cast<std::uint64_t>(d.count());
    auto& c = counts_[index(v)];
    // relaxed: single writer; see the file comment.
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (v > max_.load(std::memory_order_relaxed)) max_.store(v, std::memory_order_relaxed);
  }

  /// The value below which a fraction `q` (0..1) of the samples lie.
  std::chrono::nanoseconds percentile(double q) const noexcept {
    std::array<std::uint64_t, buckets> snap{};
    std::uint64_t total = 0;
    for (int i = 0; i < buckets; ++i) total += snap[i] = counts_[i].load(std::memory_order_relaxed);
    if (total == 0) return std::chrono::nanoseconds(0);
    const auto want = static_cast<std::uint64_t>(q * static_cast<double>(total - 1)) + 1;
    std::uint64_t seen = 0;
    for (int i = 0; i < buckets; ++i) {
      seen += snap[i];
      if (seen >= want) return std::chrono::nanoseconds(static_cast<std::int64_t>(upper(i)));
    }
    return max();
  }

  std::chrono::nanoseconds max() const noexcept {
    return std::chrono::nanoseconds(
        static_cast<std::int64_t>(max_.load(std::memory_order_relaxed)));
  }

  static int index(std::uint64_t v) noexcept {
    if (v < (1u << sub_bits)) return static_cast<int>(v); // exact below 8 ns
    const int octave = 63 - std::countl_zero(v);           // >= sub_bits
    const int sub = static_cast<int>((v >> (octave - sub_bits)) & ((1u << sub_bits) - 1));
    return ((octave - sub_bits + 1) << sub_bits) + sub;
  }
  static std::uint64_t upper(int i) noexcept {
    if (i < (1 << sub_bits)) return static_cast<std::uint64_t>(i);
    const int octave = (i >> sub_bits) + sub_bits - 1;
    const std::uint64_t sub = static_cast<std::uint64_t>(i & ((1 << sub_bits) - 1));
    const std::uint64_t width = std::uint64_t{1} << (octave - sub_bits);
    return (std::uint64_t{1} << octave) + (sub + 1) * width - 1;
  }

private:
  std::array<std::atomic<std::uint64_t>, buckets> counts_{};
  std::atomic<std::uint64_t> max_{0};
};

} // namespace palitra::detail
