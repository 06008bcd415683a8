// palitra::frame_allocator_status() (include/palitra/allocator.hpp): which
// allocator backs frames, and that a failed mimalloc load is reported, not
// silent (review A10).
#include <cstdio>
#include <cstdlib>
#include <string>

#include <unistd.h>

#include <palitra/allocator.hpp>
#include <palitra/detail/frame_allocator.hpp>

#include "diag/fault.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using palitra::frame_allocator_kind;
using palitra_test::watchdog;

namespace {

// What this build should choose: a sanitizer wins over the configuration
// (the library is compiled with the same flags as this file).
constexpr frame_allocator_kind expected_kind =
#if defined(PALITRA_SANITIZER)
    frame_allocator_kind::system_sanitizer;
#elif defined(PALITRA_TEST_MIMALLOC_CONFIGURED)
    frame_allocator_kind::mimalloc;
#else
    frame_allocator_kind::system_configured;
#endif

palitra::task<int> leaf(int v) {
  co_await palitra::yield();
  co_return v;
}

palitra::task<int> parent(int v) { co_return 1 + co_await leaf(v); }

/// Runs a few calls and checks the runner ends quiet.
void frames_work() {
  palitra::runner r;
  for (int i = 0; i < 100; ++i) REQUIRE(r.run(parent(i)) == i + 1);
  palitra_test::require_quiet(palitra_test::settled_stats(r));
}

/// Captures what fd 2 receives while `f` runs.
template <class F> std::string capture_stderr(F f) {
  std::fflush(stderr);
  std::FILE* tmp = std::tmpfile();
  REQUIRE(tmp != nullptr);
  const int saved = dup(2);
  REQUIRE(saved >= 0);
  REQUIRE(dup2(fileno(tmp), 2) == 2);
  f();
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::string out;
  std::rewind(tmp);
  char buf[512];
  while (std::fgets(buf, sizeof buf, tmp) != nullptr) out += buf;
  std::fclose(tmp);
  return out;
}

} // namespace

TEST_CASE("frame_allocator_status reports the allocator this build chose", "[allocator]") {
  watchdog w(60s);
  const palitra::frame_allocator_info s = palitra::frame_allocator_status();
  INFO("description: " << s.description << ", library: '" << s.library << "'");
  REQUIRE(s.kind == expected_kind);
  switch (s.kind) {
  case frame_allocator_kind::mimalloc:
    REQUIRE(std::string(s.description) == "mimalloc");
    REQUIRE(std::string(s.library).rfind("libmimalloc.so", 0) == 0);
    REQUIRE(std::string(palitra::detail::frame_allocator_name()) == "mimalloc");
    break;
  case frame_allocator_kind::system_sanitizer:
    REQUIRE(std::string(s.description) == "system (sanitizer build)");
    REQUIRE(std::string(palitra::detail::frame_allocator_name()) == "system");
    break;
  case frame_allocator_kind::system_configured:
    REQUIRE(std::string(s.description) == "system (configured)");
    REQUIRE(std::string(palitra::detail::frame_allocator_name()) == "system");
    break;
  case frame_allocator_kind::system_load_failed:
    FAIL("mimalloc could not be loaded (is the run-time package libmimalloc2.0 installed?)");
  }
  REQUIRE(std::string(s.reason).empty());
  frames_work();
  // Chosen once: a runner start changes nothing.
  REQUIRE(palitra::frame_allocator_status().kind == s.kind);
  REQUIRE(palitra::frame_allocator_status().description == s.description);
}

TEST_CASE("a failed mimalloc load is reported (status and PALITRA_DEBUG stderr line) and "
          "frames fall back to the system allocator",
          "[allocator][fault]") {
  watchdog w(60s);
  static const char missing[] = "libpalitra-test-no-such-mimalloc.so.9";
  if (!palitra::detail::fault::force_mimalloc_soname(missing)) {
    // The whole binary in one process: an earlier case chose already.
    WARN("the frame allocator was chosen before this case; run it alone (ctest does)");
    REQUIRE(palitra::frame_allocator_status().kind == expected_kind);
    return;
  }
  REQUIRE(setenv("PALITRA_DEBUG", "1", 1) == 0);
  palitra::frame_allocator_info s{};
  const std::string err = capture_stderr([&] { s = palitra::frame_allocator_status(); });
  unsetenv("PALITRA_DEBUG");
  INFO("description: " << s.description << "; stderr: " << err);
  if (expected_kind != frame_allocator_kind::mimalloc) {
    // This build never loads mimalloc, so the forced name is not used.
    REQUIRE(s.kind == expected_kind);
    REQUIRE(err.empty());
    frames_work();
    return;
  }
  REQUIRE(s.kind == frame_allocator_kind::system_load_failed);
  REQUIRE(std::string(s.library) == missing);
  // dlerror's text names the file it could not open.
  REQUIRE(std::string(s.reason).find(missing) != std::string::npos);
  REQUIRE(std::string(s.description) ==
          std::string("system (mimalloc could not be loaded: ") + s.reason + ")");
  REQUIRE(std::string(palitra::detail::frame_allocator_name()) == "system");
  REQUIRE(err.find("palitra: coroutine frames use the system allocator") != std::string::npos);
  REQUIRE(err.find(s.reason) != std::string::npos);
  REQUIRE(std::count(err.begin(), err.end(), '\n') == 1);
  frames_work(); // the per-thread cache now holds system blocks
  REQUIRE(palitra::frame_allocator_status().kind == frame_allocator_kind::system_load_failed);
  // Too late now: the choice is made.
  REQUIRE_FALSE(palitra::detail::fault::force_mimalloc_soname("libmimalloc.so.2"));
}
