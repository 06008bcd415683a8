// DESIGN.md §1 "Allocation": in steady state a run() makes zero calls to the
// global operator new / malloc. This binary replaces every global allocation
// entry point with a counting one that forwards to glibc's own allocator
// (__libc_*), and counts while a process-wide flag is on, on every thread
// (callers, the loop thread, anything else). It has its own Catch main and
// is built only for mimalloc frames without sanitizers (tests/CMakeLists.txt).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <errno.h>

#include <palitra/detail/frame_allocator.hpp>
#include <palitra/palitra.hpp>

#include "../support.hpp"

// ---- the counting allocator ------------------------------------------------------

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void __libc_free(void*);
void* __libc_memalign(std::size_t, std::size_t);
}

namespace {

// relaxed everywhere: a counter and a switch; the test reads them after
// joining (or synchronising with) every thread that could have counted.
std::atomic<bool> g_counting{false};
std::atomic<long> g_count{0};
constexpr int kept = 16;
std::atomic<std::size_t> g_sizes[kept]; // sizes of the first counted requests
std::atomic<int> g_kinds[kept];         // 0 malloc, 1 calloc, 2 realloc, 3 memalign, 4 new

inline void count(std::size_t size, int kind) noexcept {
  if (!g_counting.load(std::memory_order_relaxed)) return;
  const long n = g_count.fetch_add(1, std::memory_order_relaxed);
  if (n < kept) {
    g_sizes[n].store(size, std::memory_order_relaxed);
    g_kinds[n].store(kind, std::memory_order_relaxed);
  }
}

void* aligned(std::size_t align, std::size_t size, int kind) noexcept {
  count(size, kind);
  return __libc_memalign(align, size);
}

void* new_impl(std::size_t size) {
  count(size, 4);
  void* p = __libc_malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void* new_aligned_impl(std::size_t size, std::align_val_t al) {
  void* p = aligned(static_cast<std::size_t>(al), size == 0 ? 1 : size, 4);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

} // namespace

extern "C" {
void* malloc(std::size_t size) {
  count(size, 0);
  return __libc_malloc(size);
}
void* calloc(std::size_t n, std::size_t size) {
  count(n * size, 1);
  return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t size) {
  count(size, 2);
  return __libc_realloc(p, size);
}
void free(void* p) { __libc_free(p); }
void* memalign(std::size_t align, std::size_t size) { return aligned(align, size, 3); }
void* aligned_alloc(std::size_t align, std::size_t size) { return aligned(align, size, 3); }
int posix_memalign(void** out, std::size_t align, std::size_t size) {
  if (align < sizeof(void*) || (align & (align - 1)) != 0) return EINVAL;
  void* p = aligned(align, size, 3);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
}

void* operator new(std::size_t size) { return new_impl(size); }
void* operator new[](std::size_t size) { return new_impl(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return new_impl(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return new_impl(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t size, std::align_val_t al) { return new_aligned_impl(size, al); }
void* operator new[](std::size_t size, std::align_val_t al) { return new_aligned_impl(size, al); }
void* operator new(std::size_t size, std::align_val_t al, const std::nothrow_t&) noexcept {
  try {
    return new_aligned_impl(size, al);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, std::align_val_t al, const std::nothrow_t&) noexcept {
  try {
    return new_aligned_impl(size, al);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { __libc_free(p); }
void operator delete[](void* p) noexcept { __libc_free(p); }
void operator delete(void* p, std::size_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::size_t) noexcept { __libc_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  __libc_free(p);
}

// ---- tests ---------------------------------------------------------------------------

namespace {

using namespace std::chrono_literals;

struct counting_window {
  counting_window() {
    g_count.store(0, std::memory_order_relaxed);
    g_counting.store(true, std::memory_order_seq_cst);
  }
  long stop() {
    g_counting.store(false, std::memory_order_seq_cst);
    return g_count.load(std::memory_order_relaxed);
  }
  ~counting_window() { g_counting.store(false, std::memory_order_seq_cst); }
};

std::string first_counted(long n) {
  static const char* kinds[] = {"malloc", "calloc", "realloc", "memalign", "operator new"};
  std::string s;
  for (long i = 0; i < n && i < kept; ++i)
    s += std::string(kinds[g_kinds[i].load()]) + "(" + std::to_string(g_sizes[i].load()) + ") ";
  return s;
}

void report(const char* what, long allocs, long calls) {
  std::printf("%s: %ld global allocations in %ld calls (%.4f per call)\n", what, allocs, calls,
              double(allocs) / double(calls));
  std::fflush(stdout);
}

palitra::task<int> trivial(int v) { co_return v + 1; }

palitra::task<int> yielding(int v) {
  co_await palitra::yield();
  co_return v + 1;
}

palitra::task<int> child(int v) {
  co_await palitra::yield();
  co_return v * 2;
}
palitra::task<int> parent(int v) { co_return 1 + co_await child(v); }

/// warm-up, then `calls` runs of make(i) counted; returns the count.
template <class Make> long measure(const char* what, palitra::runner& r, Make make,
                                    int (*expect)(int), int calls = 10000) {
  long wrong = 0;
  for (int i = 0; i < 1000; ++i)
    if (r.run(make(i)) != expect(i)) ++wrong;
  REQUIRE(wrong == 0);
  counting_window w;
  for (int i = 0; i < calls; ++i)
    if (r.run(make(i)) != expect(i)) ++wrong;
  const long allocs = w.stop();
  report(what, allocs, calls);
  INFO("first counted: " << first_counted(allocs));
  REQUIRE(wrong == 0);
  return allocs;
}

} // namespace

TEST_CASE("the counting allocator counts", "[alloc]") {
  counting_window w;
  void* p = std::malloc(10);
  int* q = new int(3);
  std::string s(100, 'x'); // heap buffer via operator new
  delete q;
  std::free(p);
  const long n = w.stop();
  REQUIRE(n >= 3);
}

TEST_CASE("the window counts allocations made on the loop thread (control)", "[alloc]") {
  palitra::runner r;
  auto allocating = [](int v) -> palitra::task<int> {
    co_await palitra::yield();
    auto p = std::make_unique<int>(v); // on the loop thread
    co_return *p + 1;
  };
  for (int i = 0; i < 100; ++i) REQUIRE(r.run(allocating(i)) == i + 1);
  long wrong = 0;
  counting_window w;
  for (int i = 0; i < 1000; ++i)
    if (r.run(allocating(i)) != i + 1) ++wrong;
  const long n = w.stop();
  report("control: one make_unique per call on the loop", n, 1000);
  REQUIRE(wrong == 0);
  REQUIRE(n >= 1000);
}

TEST_CASE("frames come from mimalloc", "[alloc]") {
  INFO(palitra::frame_allocator_status().description);
  REQUIRE(palitra::frame_allocator_status().kind == palitra::frame_allocator_kind::mimalloc);
  REQUIRE(palitra::detail::frame_allocator_name() == std::string("mimalloc"));
}

TEST_CASE("steady-state run of a trivial task makes zero global allocations", "[alloc]") {
  REQUIRE(palitra::detail::frame_allocator_name() == std::string("mimalloc"));
  palitra::runner r;
  const long n = measure("run(trivial)", r, trivial, [](int v) { return v + 1; });
  REQUIRE(n == 0);
}

TEST_CASE("steady-state run of a task that yields makes zero global allocations", "[alloc]") {
  REQUIRE(palitra::detail::frame_allocator_name() == std::string("mimalloc"));
  palitra::runner r;
  const long n = measure("run(yield)", r, yielding, [](int v) { return v + 1; });
  REQUIRE(n == 0);
}

TEST_CASE("steady-state run of a task that awaits a child makes zero global allocations",
          "[alloc]") {
  REQUIRE(palitra::detail::frame_allocator_name() == std::string("mimalloc"));
  palitra::runner r;
  const long n = measure("run(child task)", r, parent, [](int v) { return 1 + v * 2; });
  REQUIRE(n == 0);
}

TEST_CASE("steady-state run with a timeout (timer armed and removed) makes zero global "
          "allocations",
          "[alloc]") {
  REQUIRE(palitra::detail::frame_allocator_name() == std::string("mimalloc"));
  palitra::runner r;
  long wrong = 0;
  for (int i = 0; i < 1000; ++i)
    if (r.run(yielding(i), 10s) != i + 1) ++wrong;
  counting_window w;
  for (int i = 0; i < 10000; ++i)
    if (r.run(yielding(i), 10s) != i + 1) ++wrong;
  const long allocs = w.stop();
  report("run(yield, timeout)", allocs, 10000);
  INFO("first counted: " << first_counted(allocs));
  REQUIRE(wrong == 0);
  REQUIRE(allocs == 0);
}

TEST_CASE("steady-state palitra::run on the global runner makes zero global allocations",
          "[alloc]") {
  REQUIRE(palitra::detail::frame_allocator_name() == std::string("mimalloc"));
  long wrong = 0;
  for (int i = 0; i < 1000; ++i)
    if (palitra::run(trivial(i)) != i + 1) ++wrong;
  counting_window w;
  for (int i = 0; i < 10000; ++i)
    if (palitra::run(yielding(i)) != i + 1) ++wrong;
  const long allocs = w.stop();
  report("palitra::run(yield), global runner", allocs, 10000);
  INFO("first counted: " << first_counted(allocs));
  REQUIRE(wrong == 0);
  REQUIRE(allocs == 0);
}

TEST_CASE("4 threads calling run concurrently make zero global allocations", "[alloc]") {
  REQUIRE(palitra::detail::frame_allocator_name() == std::string("mimalloc"));
  palitra::runner r;
  constexpr int threads = 4, calls = 2500, warmup = 1000;
  std::atomic<int> arrived{0}, finished{0};
  std::atomic<bool> go{false};
  std::atomic<long> wrong{0};
  // Threads are created (which allocates) and warmed up outside the window;
  // the window opens once all of them wait at the start line and closes
  // once all have finished their counted calls.
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      long bad = 0;
      for (int i = 0; i < warmup; ++i)
        if (r.run(t % 2 == 0 ? yielding(i) : parent(i)) != (t % 2 == 0 ? i + 1 : 1 + 2 * i))
          ++bad;
      arrived.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < calls; ++i) {
        const int v = t * 100000 + i;
        if (r.run(t % 2 == 0 ? yielding(v) : parent(v)) != (t % 2 == 0 ? v + 1 : 1 + 2 * v))
          ++bad;
      }
      finished.fetch_add(1);
      wrong.fetch_add(bad);
    });
  while (arrived.load() < threads) std::this_thread::yield();
  long allocs;
  {
    counting_window w;
    go.store(true);
    while (finished.load() < threads) std::this_thread::yield();
    allocs = w.stop();
  }
  for (auto& t : ts) t.join();
  report("4 threads x run", allocs, long(threads) * calls);
  INFO("first counted: " << first_counted(allocs));
  REQUIRE(wrong == 0);
  REQUIRE(allocs == 0);
}

namespace {

// n echo round trips on one established connection, inside one task: the
// client writes 64 bytes, the server task echoes them, the client reads
// them back (both ends on the same loop).
palitra::task<long> echo_round_trips(palitra::net::tcp_stream& c, palitra::net::tcp_stream& s,
                                     int n) {
  std::byte out[64], in[64], mid[64];
  std::memset(out, 'e', sizeof out);
  long wrong = 0;
  for (int i = 0; i < n; ++i) {
    co_await c.write_all(out);
    co_await s.read_exact(mid);
    co_await s.write_all(mid);
    co_await c.read_exact(in);
    if (std::memcmp(in, out, sizeof in) != 0) ++wrong;
  }
  co_return wrong;
}

palitra::task<std::pair<palitra::net::tcp_stream, palitra::net::tcp_stream>>
loopback_pair(palitra::net::tcp_listener& l) {
  auto c = co_await palitra::net::tcp_stream::connect("127.0.0.1", l.port());
  auto s = co_await l.accept();
  co_return std::pair{std::move(c), std::move(s)};
}

} // namespace

TEST_CASE("steady-state echo round trips on an established connection make zero global "
          "allocations",
          "[alloc][net]") {
  REQUIRE(palitra::detail::frame_allocator_name() == std::string("mimalloc"));
  palitra_test::watchdog dog(std::chrono::seconds(60), "echo allocations"); // sockets can hang
  palitra::runner r;
  auto listener = palitra::net::tcp_listener::bind("127.0.0.1", 0);
  auto [c, s] = r.run(loopback_pair(listener));
  REQUIRE(r.run(echo_round_trips(c, s, 1000)) == 0); // warm-up: both handles registered
  counting_window w;
  const long wrong = r.run(echo_round_trips(c, s, 10000));
  const long allocs = w.stop();
  report("echo round trip (write_all, read_exact both ways)", allocs, 10000);
  INFO("first counted: " << first_counted(allocs));
  REQUIRE(wrong == 0);
  REQUIRE(allocs == 0);
}
