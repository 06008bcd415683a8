// palitra::http — the loop's side of one curl multi handle: curl's sockets
// on the reactor's persistent watches, curl's one timer on the loop's heap,
// and finished transfers handed back to their tasks.
//
// Rules (DESIGN.md §6; research/io-integrations.md §1 has the curl issue
// behind each):
//   R1 curl's callbacks only record: a socket callback sets a watch's
//      interest, a timer callback arms or removes the timer. libcurl is
//      called again only from the loop (a watch report, the timer firing, a
//      task adding or removing its transfer), never from inside one of its
//      own callbacks (CURLM_RECURSIVE_API_CALL, curl #8282).
//   R2 A timer of 0 runs the timeout action on the next loop pass, not
//      inline. A 0 asked for again from inside that action (the threaded
//      resolver does this while it works, curl PR #2685) becomes 1 ms, so
//      a resolve cannot spin the loop.
//   R3 palitra opens and closes curl's sockets (OPENSOCKETFUNCTION /
//      CLOSESOCKETFUNCTION): a socket leaves the reactor before it is closed
//      (reactor I5). An fd curl opened itself (the resolver's socketpair)
//      leaves the reactor at CURL_POLL_REMOVE, before curl closes it.
//   R4 Sockets are keyed by fd, not by curl_multi_assign's pointer (curl
//      #20377); a REMOVE for an unknown fd, or a repeated one, is ignored
//      (#16026, #17949); the latest interest wins.
//   R5 Watches are level-triggered and carry exactly what curl asked for;
//      an idle pooled socket has interest 0 (io_ops I7: no report, not even
//      an error), so a reset idle connection cannot spin the loop; curl
//      finds the dead connection when it next tries to use it.
//   R6 Finished transfers (curl_multi_info_read) are removed from the multi
//      and their tasks scheduled through the run queue, never resumed inside
//      a reactor dispatch or a curl call.
// Loop thread only, except where a member says otherwise.
#pragma once

#include <memory>
#include <unordered_map>

#include <curl/curl.h>

#include "reactor/reactor.hpp"
#include "runtime/loop.hpp"

namespace palitra::http::detail {

class curl_driver;

/// One transfer in the multi: the task's side implements done().
struct transfer_base {
  CURL* easy = nullptr;
  /// Called (R6) once curl finished it and it left the multi.
  virtual void done(CURLcode result) noexcept = 0;

protected:
  ~transfer_base() = default;
};

class curl_driver {
public:
  /// Creates the multi with these limits. Throws palitra::error.
  curl_driver(palitra::detail::loop& l, long max_total, long max_per_host);
  ~curl_driver(); // curl_multi_cleanup: on the loop, or after leave_loop()
  curl_driver(const curl_driver&) = delete;
  curl_driver& operator=(const curl_driver&) = delete;

  /// Sets the easy options that route its sockets through this driver (R3).
  void adopt(CURL* easy) noexcept;
  /// Starts `t` (its easy handle is set up and adopted). Throws palitra::error.
  void add(transfer_base& t);
  /// Takes `t` out at once (a cancelled transfer: curl closes its connection).
  void remove(transfer_base& t) noexcept;

  /// H0: the loop exits before us. Gives back the timer and the watches;
  /// from now on sockets close without the reactor ("dead").
  void leave_loop() noexcept;
  bool dead() const noexcept { return loop_ == nullptr; }

private:
  struct sock;
  static int on_socket(CURL* e, curl_socket_t s, int what, void* self, void* sockp) noexcept;
  static int on_timer(CURLM* m, long timeout_ms, void* self) noexcept;
  static curl_socket_t on_open(void* self, curlsocktype purpose, curl_sockaddr* a) noexcept;
  static int on_close(void* self, curl_socket_t s) noexcept;
  static void on_watch(palitra::detail::io_op& op) noexcept;
  static void on_timer_fired(void* self) noexcept;

  sock* track(curl_socket_t s, bool ours) noexcept;
  void forget(curl_socket_t s) noexcept;
  void action(curl_socket_t s, int mask) noexcept;
  void drain_done() noexcept;

  palitra::detail::loop* loop_; // null once dead
  CURLM* multi_ = nullptr;
  palitra::detail::timer_node timer_;
  bool in_timeout_action_ = false;
  std::unordered_map<curl_socket_t, std::unique_ptr<sock>> socks_;
};

} // namespace palitra::http::detail
