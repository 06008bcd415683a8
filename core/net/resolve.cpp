// palitra — name resolution (resolve.hpp). getaddrinfo blocks (it may read
// files, ask a DNS server, wait for timeouts), so the loop hands names to the
// runner's blocking pool (to_thread) and only parses numeric hosts itself.
#include <cstring>
#include <string>

#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>

#include <palitra/error.hpp>
#include <palitra/to_thread.hpp>

#include "net/resolve.hpp"

namespace palitra::detail::net {
namespace {

endpoint v4(const in_addr& a, std::uint16_t port) noexcept {
  endpoint e;
  auto* sa = reinterpret_cast<sockaddr_in*>(&e.addr);
  sa->sin_family = AF_INET;
  sa->sin_port = htons(port);
  sa->sin_addr = a;
  e.len = sizeof(sockaddr_in);
  return e;
}

endpoint v6(const in6_addr& a, std::uint16_t port, std::uint32_t scope) noexcept {
  endpoint e;
  auto* sa = reinterpret_cast<sockaddr_in6*>(&e.addr);
  sa->sin6_family = AF_INET6;
  sa->sin6_port = htons(port);
  sa->sin6_addr = a;
  sa->sin6_scope_id = scope;
  e.len = sizeof(sockaddr_in6);
  return e;
}

} // namespace

bool parse_numeric(const std::string& host, std::uint16_t port, std::vector<endpoint>& out) {
  in_addr a4{};
  if (::inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    out.push_back(v4(a4, port));
    return true;
  }
  std::string h = host;
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  std::uint32_t scope = 0;
  if (const auto pct = h.find('%'); pct != std::string::npos) {
    scope = ::if_nametoindex(h.c_str() + pct + 1);
    if (scope == 0) return false;
    h.resize(pct);
  }
  in6_addr a6{};
  if (::inet_pton(AF_INET6, h.c_str(), &a6) == 1) {
    out.push_back(v6(a6, port, scope));
    return true;
  }
  if (host == "localhost") { // RFC 6761: always loopback, no lookup needed
    a4.s_addr = htonl(INADDR_LOOPBACK);
    out.push_back(v4(a4, port));
    out.push_back(v6(in6addr_loopback, port, 0));
    return true;
  }
  return false;
}

std::vector<endpoint> resolve_blocking(const std::string& host, std::uint16_t port,
                                       const char* what) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) {
    const std::error_code ec = rc == EAI_SYSTEM
                                   ? std::error_code(errno, std::system_category())
                                   : std::make_error_code(std::errc::host_unreachable);
    throw io_error(std::string(what) + ": cannot resolve '" + host + "' (" + ::gai_strerror(rc) +
                       ")",
                   ec);
  }
  std::vector<endpoint> out;
  for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    endpoint e;
    std::memcpy(&e.addr, ai->ai_addr, ai->ai_addrlen);
    e.len = ai->ai_addrlen;
    out.push_back(e);
  }
  ::freeaddrinfo(res);
  if (out.empty())
    throw io_error(std::string(what) + ": '" + host + "' has no TCP address",
                   std::make_error_code(std::errc::host_unreachable));
  return out;
}

task<std::vector<endpoint>> resolve(std::string host, std::uint16_t port, const char* what) {
  std::vector<endpoint> out;
  if (parse_numeric(host, port, out)) co_return out;
  // Named, not a temporary inside the co_await (to_thread.hpp: g++ 12).
  auto lookup = [host = std::move(host), port, what] { return resolve_blocking(host, port, what); };
  co_return co_await to_thread(palitra::moved(lookup));
}

std::string describe(const std::string& host, std::uint16_t port) {
  const bool v6 = host.find(':') != std::string::npos && host.front() != '[';
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

} // namespace palitra::detail::net
