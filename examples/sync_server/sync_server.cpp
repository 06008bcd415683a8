// palitra example: a synchronous, thread-per-connection HTTP server
// (cpp-httplib) whose handler fans out to an upstream through palitra
// (comments_server.hpp). GET /api/comments answers the JSON array of
// upstream /comments/1, /2 and /3, or 502 with a JSON error.
//
//   sync_server [--port N] [--upstream URL] [--timeout-ms MS] [--threads N]
//               [--variant palitra|blocking|fresh] [--upstream-delay-ms MS]
//
// --port 0 (the default) takes an ephemeral port; it prints
// "listening on 127.0.0.1:N" once it accepts. Without --upstream it starts
// the example upstream (upstream/upstream.hpp) on its own runner, answering
// after --upstream-delay-ms (20). SIGINT or SIGTERM: stop accepting, let the
// requests in progress finish, close the client and the runners, exit 0.
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "../upstream/upstream.hpp"
#include "comments_server.hpp"

namespace {

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: sync_server [--port N] [--upstream URL] [--timeout-ms MS] [--threads N]\n"
               "                   [--variant palitra|blocking|fresh] [--upstream-delay-ms MS]\n");
  std::exit(2);
}

long number(const char* s, long lo, long hi) {
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < lo || v > hi) usage();
  return v;
}

} // namespace

int main(int argc, char** argv) {
  palitra::runtime_guard guard; // the global runner closes before main returns
  example::server_options o;
  long delay_ms = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage();
    const char* v = argv[++i];
    if (a == "--port") o.port = static_cast<std::uint16_t>(number(v, 0, 65535));
    else if (a == "--upstream") o.upstream = v;
    else if (a == "--timeout-ms") o.timeout = std::chrono::milliseconds(number(v, 1, 3600000));
    else if (a == "--threads") o.threads = static_cast<int>(number(v, 1, 1024));
    else if (a == "--upstream-delay-ms") delay_ms = number(v, 0, 3600000);
    else if (a == "--variant") {
      const std::string s = v;
      if (s == "palitra") o.how = example::variant::palitra;
      else if (s == "blocking") o.how = example::variant::blocking;
      else if (s == "fresh") o.how = example::variant::fresh;
      else usage();
    } else usage();
  }
  while (!o.upstream.empty() && o.upstream.back() == '/') o.upstream.pop_back();

  // Before any thread exists: every thread inherits the blocked mask, so
  // only sigwait below receives them; and libcurl's global init.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  std::unique_ptr<example::upstream> builtin;
  if (o.upstream.empty()) {
    builtin = std::make_unique<example::upstream>(std::chrono::milliseconds(delay_ms));
    o.upstream = builtin->url();
    std::fprintf(stderr, "upstream (built in) on %s, %ld ms delay\n", o.upstream.c_str(), delay_ms);
  }

  {
    example::comments_server server(o);
    std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(server.port()));
    std::fflush(stdout);
    std::atomic<int> sig{0};
    std::thread stopper([&] {
      int s = 0;
      sigwait(&stop_signals, &s);
      sig.store(s);
      server.stop(); // serve() returns once the requests in progress are answered
    });
    server.serve();
    if (sig.load() == 0) { // serve() failed on its own: release the stopper
      std::fprintf(stderr, "sync_server: the server stopped by itself\n");
      pthread_kill(stopper.native_handle(), SIGTERM);
    }
    stopper.join();
    std::fprintf(stderr, "%s: stopped; upstream connections opened: %llu\n",
                 sig.load() == SIGINT ? "SIGINT" : "SIGTERM",
                 static_cast<unsigned long long>(server.upstream_connections_opened()));
  } // the server's http::client goes here, on this thread, its loop still running
  // Graceful: calls still in flight get up to 2 s, then close() cancels them.
  palitra::shutdown_global_runner(std::chrono::seconds(2));
  builtin.reset();
  return 0;
}
