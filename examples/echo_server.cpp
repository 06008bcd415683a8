// palitra example: a TCP echo server on palitra's net API. The accept loop
// runs on a runner and spawns a task per connection (echo_core.hpp);
// SIGINT or SIGTERM closes the runner, which cancels the accept loop and
// every connection's task and closes their sockets, and the program exits 0.
//
//   echo_server --port N      (0, the default: an ephemeral port)
// prints "listening on 127.0.0.1:N" once it accepts connections.
#include <pthread.h>
#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <palitra/palitra.hpp>

#include "echo_core.hpp"

int main(int argc, char** argv) {
  long port = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      port = std::strtol(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: echo_server [--port N]\n");
      return 2;
    }
  }
  if (port < 0 || port > 65535) {
    std::fprintf(stderr, "echo_server: --port must be 0..65535\n");
    return 2;
  }
  // Block the signals before the runner starts its thread (which inherits
  // the mask), so only sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::uint64_t accepted = 0; // the loop's, until close() returns
  palitra::runner r;
  auto listener = palitra::net::tcp_listener::bind("127.0.0.1", static_cast<std::uint16_t>(port));
  r.spawn(example::serve(r, listener, accepted));
  std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(listener.port()));
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  r.close(); // cancels the accept loop and every connection, then joins
  std::printf("%s: closed after %llu connection(s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
              static_cast<unsigned long long>(accepted));
  return 0;
}
