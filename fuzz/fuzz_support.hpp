// palitra — shared helpers of the fuzz targets: the input reader that turns
// bytes into operation parameters, and the model-mismatch check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace palitra_fuzz {

/// A mismatch between palitra and the reference model: print and abort, so
/// libFuzzer saves the input as a crash and the replay driver fails.
[[noreturn]] inline void fail(const char* cond, const char* msg, const char* file, int line) {
  std::fprintf(stderr, "palitra fuzz: model mismatch: %s (%s) at %s:%d\n", msg, cond, file, line);
  std::fflush(stderr);
  std::abort();
}

#define FUZZ_CHECK(cond, msg)                                                                 \
  do {                                                                                        \
    if (!(cond)) ::palitra_fuzz::fail(#cond, msg, __FILE__, __LINE__);                        \
  } while (0)

/// Reads the input front to back. Past the end every read returns 0, and
/// `done()` tells the op loop to stop, so any byte string is a valid program.
class reader {
public:
  reader(const std::uint8_t* data, std::size_t size) noexcept : p_(data), end_(data + size) {}

  bool done() const noexcept { return p_ >= end_; }

  std::uint8_t u8() noexcept { return p_ < end_ ? *p_++ : 0; }
  std::uint16_t u16() noexcept {
    const std::uint16_t lo = u8();
    return static_cast<std::uint16_t>(lo | (u8() << 8));
  }
  /// A value in [0, n) (n > 0) from one byte.
  unsigned below(unsigned n) noexcept { return u8() % n; }
  bool flag() noexcept { return (u8() & 1) != 0; }

private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

} // namespace palitra_fuzz
