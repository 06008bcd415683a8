// palitra::http over TLS and HTTP/2 against a real loopback server: nghttpd
// (Debian nghttp2-server) serving a directory over TLS with h2 (ALPN), with
// a CA and a server certificate that the test makes with the openssl CLI.
// Every case ends with the process's fd count where it began, the server
// stopped and its directory removed.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <csignal>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/wait.h>

#include <curl/curl.h>

#include <palitra/http.hpp>
#include <palitra/palitra.hpp>

#include "../support.hpp"

extern char** environ;

using namespace std::chrono_literals;
using palitra::task;
using palitra_test::watchdog;
namespace http = palitra::http;
namespace fs = std::filesystem;

namespace {

/// A CA, a certificate for IP 127.0.0.1 signed by it, and nghttpd serving
/// `doc.json` from a temporary directory on a free loopback port.
class tls_server {
public:
  tls_server() {
    char tmpl[] = "/tmp/palitra-tls-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    const std::string d = dir_.string();
    // The openssl CLI, as a user would: a self-signed CA, then a server key
    // and certificate with subjectAltName IP:127.0.0.1 signed by it.
    const std::string cmds =
        "cd '" + d + "' && "
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
        "-subj '/CN=palitra test CA' && "
        "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj '/CN=127.0.0.1' && "
        "printf 'subjectAltName=IP:127.0.0.1\\n' > ext && "
        "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem "
        "-days 2 -extfile ext";
    REQUIRE(std::system((cmds + " >/dev/null 2>&1").c_str()) == 0);
    fs::create_directory(dir_ / "www");
    std::ofstream(dir_ / "www" / "doc.json") << R"({"tls":true})";
    // A free port: bind port 0, read it, release it for nghttpd.
    {
      auto l = palitra::net::tcp_listener::bind("127.0.0.1", 0);
      port_ = l.port();
    }
    const std::string port = std::to_string(port_), www = (dir_ / "www").string(),
                      key = (dir_ / "srv.key").string(), cert = (dir_ / "srv.pem").string();
    const char* argv[] = {"nghttpd", "-a", "127.0.0.1", "-d", www.c_str(), port.c_str(),
                          key.c_str(), cert.c_str(), nullptr};
    REQUIRE(::posix_spawnp(&pid_, "nghttpd", nullptr, nullptr, const_cast<char**>(argv), environ) == 0);
    // Ready once it accepts (bounded: 5 s).
    for (int i = 0; i < 500 && !accepting(); ++i) std::this_thread::sleep_for(10ms);
    REQUIRE(accepting());
  }
  ~tls_server() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string url(const std::string& path) const {
    return "https://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::string ca() const { return (dir_ / "ca.pem").string(); }

private:
  bool accepting() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
  }

  fs::path dir_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

template <class F> void with_tls(F body) {
  watchdog dog(60s);
  const int fds = palitra_test::open_fds();
  {
    tls_server srv;
    palitra::runner r;
    body(srv, r);
  }
  REQUIRE(palitra_test::fds_settled(fds) == fds);
}

} // namespace

TEST_CASE("http: TLS to a loopback server is verified against the test's CA", "[http][tls]") {
  with_tls([](tls_server& srv, palitra::runner& r) {
    http::client_options o;
    o.ca_file = srv.ca();
    http::client c(o);
    const auto resp = r.run(c.get(srv.url("/doc.json")));
    REQUIRE(resp.status == 200);
    REQUIRE(resp.body == R"({"tls":true})");
  });
}

TEST_CASE("http: TLS without the test's CA is refused", "[http][tls]") {
  with_tls([](tls_server& srv, palitra::runner& r) {
    http::client c; // the system's CAs only
    try {
      (void)r.run(c.get(srv.url("/doc.json")));
      FAIL("an unverifiable certificate was accepted");
    } catch (const palitra::io_error& e) {
      INFO(e.what());
      REQUIRE(&e.code().category() == &http::error_category());
      REQUIRE(e.code().value() == CURLE_PEER_FAILED_VERIFICATION);
    }
  });
}

TEST_CASE("http: HTTP/2 multiplexes concurrent requests over one connection", "[http][tls]") {
  with_tls([](tls_server& srv, palitra::runner& r) {
    http::client_options o;
    o.ca_file = srv.ca();
    http::client c(o);
    const int ok = r.run([&]() -> task<int> {
      std::vector<task<http::response>> ts;
      for (int i = 0; i < 8; ++i) ts.push_back(c.get(srv.url("/doc.json")));
      const auto rs = co_await palitra::when_all(std::move(ts));
      int n = 0;
      for (const auto& x : rs) n += x.status == 200 ? 1 : 0;
      co_return n;
    });
    REQUIRE(ok == 8);
    // Eight at once over HTTP/1.1 would need eight connections; h2 (ALPN,
    // which nghttpd offers) carries them as streams of one.
    REQUIRE(c.stats().connections_opened == 1);
  });
}
