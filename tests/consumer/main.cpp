// A consumer built with -fsanitize=thread outside palitra's presets: 4
// threads x CALLS palitra::run calls on the global runner, and the frame
// allocator must say "system (sanitizer build)". TSan itself fails the run
// (exit code 66 by default) if it reports anything.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include <palitra/detail/frame_allocator.hpp>
#include <palitra/palitra.hpp>

namespace {

palitra::task<int> leaf(int v) {
  co_await palitra::yield();
  co_return v;
}

palitra::task<int> parent(int v) { co_return 1 + co_await leaf(v); }

} // namespace

int main(int argc, char** argv) {
  const int calls = argc > 1 ? std::atoi(argv[1]) : 300;
  constexpr int threads = 4;
  std::atomic<long> wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < calls; ++i) {
        const int v = t * 100000 + i;
        // relaxed: read after join
        if (palitra::run(parent(v)) != v + 1) wrong.fetch_add(1, std::memory_order_relaxed);
      }
    });
  for (auto& t : ts) t.join();
  palitra::shutdown_global_runner();

  const char* name = palitra::detail::frame_allocator_name();
#if __has_include(<palitra/allocator.hpp>)
  const palitra::frame_allocator_info s = palitra::frame_allocator_status();
  std::printf("palitra_consumer: %d x %d calls, frames: %s\n", threads, calls, s.description);
  const bool system = s.kind == palitra::frame_allocator_kind::system_sanitizer;
#else // palitra before the status API (to show the problem this guards)
  std::printf("palitra_consumer: %d x %d calls, frames: %s\n", threads, calls, name);
  const bool system = std::strcmp(name, "system") == 0;
#endif
  if (wrong.load() != 0) {
    std::printf("palitra_consumer: %ld wrong results\n", wrong.load());
    return 1;
  }
  if (!system || std::strcmp(name, "system") != 0) {
    std::printf("palitra_consumer: expected frames from the system allocator in a TSan build\n");
    return 1;
  }
  return 0;
}
