// palitra::http — an HTTP client on the loop over libcurl's multi interface
// (DESIGN.md §6). Target palitra::http; needs libcurl >= 7.88.
//
// One client is one curl multi handle living on one loop: its connection
// cache is the keep-alive pool (HTTP/1.1 reuse, HTTP/2 multiplexing, TLS
// through OpenSSL), kept between palitra::run calls. The loop drives curl
// through the reactor's persistent watches and one timer; no thread per
// request. aiohttp's ClientSession is the model.
//
// Loop-affine (DESIGN.md §2): a client belongs to the runner whose loop first
// sends on it; sending on another loop throws palitra::error. Construct and
// destroy it on any thread, also after its runner closed and during exit: a
// sync server keeps one as a member or a static and uses it through run().
// Destroying it while requests are in flight lets them finish; its
// connections close when the last one ends.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <palitra/error.hpp>
#include <palitra/task.hpp>

namespace palitra::http {

using headers = std::vector<std::pair<std::string, std::string>>;

struct request {
  std::string method = "GET";
  std::string url;
  http::headers headers;
  std::string body;
  /// The whole request; 0: the client's timeout.
  std::chrono::nanoseconds timeout{0};
};

struct response {
  int status = 0;
  http::headers headers; ///< of the final response (after redirects), in order
  std::string body;

  /// The first header named `name` (case-insensitive), or "" if absent.
  std::string_view header(std::string_view name) const noexcept;
  /// Throws status_error if status >= 400.
  void raise_for_status() const;
};

/// A response with status >= 400, from response::raise_for_status().
class status_error : public palitra::error {
public:
  status_error(int status, std::string body, const std::string& what);
  int status() const noexcept { return status_; }
  const std::string& body() const noexcept { return body_; }

private:
  int status_;
  std::string body_;
};

/// The category of a transport failure's io_error::code(): curl's CURLcode
/// values with curl's own messages.
const std::error_category& error_category() noexcept;

struct client_options {
  std::size_t max_connections = 64;          ///< open at once, all hosts
  std::size_t max_connections_per_host = 16; ///< open at once, per host
  std::chrono::nanoseconds connect_timeout = std::chrono::seconds(10);
  std::chrono::nanoseconds timeout = std::chrono::seconds(30); ///< whole request
  std::size_t max_response_bytes = 64u << 20;                  ///< body; more is an io_error
  std::string user_agent = "palitra-http/0.1";
  bool follow_redirects = true; ///< at most 10
  bool verify_tls = true;
  /// PEM file of CAs to trust instead of the system store ("" = system).
  std::string ca_file;
};

/// Counters; any thread, relaxed (a snapshot, not a consistent cut).
struct client_stats {
  std::uint64_t requests = 0;           ///< sent (started)
  std::uint64_t in_flight = 0;          ///< started, not ended
  std::uint64_t connections_opened = 0; ///< new TCP connections (CURLINFO_NUM_CONNECTS summed)
  std::uint64_t bytes_received = 0;     ///< response bodies
};

namespace detail {
struct client_core;
} // namespace detail

class client {
public:
  /// Cheap: nothing is created until the first request. Thread: any.
  explicit client(client_options o = {});
  ~client();
  client(client&& o) noexcept : core_(std::exchange(o.core_, nullptr)) {}
  client& operator=(client&& o) noexcept;
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Send `r` and wait for the whole response. Thread: a loop thread.
  /// Cancel: yes; the transfer leaves the pool at once and its connection is
  /// closed, never reused mid-response.
  /// Throws: io_error (code() in error_category(): refused, reset, DNS, TLS,
  /// malformed response, body over max_response_bytes), timeout_error (the
  /// request's timeout), palitra::error (misuse: another loop, a URL with
  /// no scheme), cancelled_error.
  task<response> send(request r);
  task<response> get(std::string url, http::headers h = {});
  task<response> post(std::string url, std::string body,
                      std::string content_type = "application/json", http::headers h = {});

  client_stats stats() const noexcept;

private:
  detail::client_core* core_;
};

} // namespace palitra::http
