// palitra — host names and numeric addresses to socket addresses.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <sys/socket.h>

#include <palitra/task.hpp>

namespace palitra::detail::net {

struct endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family() const noexcept { return addr.ss_family; }
};

/// A numeric IPv4/IPv6 address (an IPv6 one may carry a %scope), or
/// "localhost" (127.0.0.1, then ::1), without any lookup. false otherwise.
bool parse_numeric(const std::string& host, std::uint16_t port, std::vector<endpoint>& out);
/// getaddrinfo (blocking: never on the loop thread). Throws io_error.
std::vector<endpoint> resolve_blocking(const std::string& host, std::uint16_t port,
                                       const char* what);
/// Numeric hosts at once; names through to_thread. Thread: loop.
task<std::vector<endpoint>> resolve(std::string host, std::uint16_t port, const char* what);
/// "host:port" / "[v6]:port" for messages.
std::string describe(const std::string& host, std::uint16_t port);

} // namespace palitra::detail::net
