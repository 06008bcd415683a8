// palitra::http — client, request, response (http.hpp) over curl_driver.
//
// Ownership of a client_core (loop thread once bound, as core/net/socket.hpp):
//   - a loop_affine core (runtime/loop_affine.hpp): the public client holds
//     the owner's reference, every send() task one from its creation, so a
//     client destroyed while requests are in flight lets them finish, and
//     the last reference cleans up on the home loop (handed off from
//     another thread, H1) or in place once the loop is gone (H2);
//   - registered as a loop resident (H0): a loop that exits first takes its
//     timer and watches back, and the core goes on without the reactor.
// One transfer (one send) lives in its coroutine frame:
//   added   -> finished  curl_driver::drain_done -> done(): result stored,
//                        resume scheduled (R6);
//   added   -> cancelled the chain's hook: removed from the multi at once
//                        (curl closes its connection), resume scheduled;
//   destroyed while added (a frame destroyed mid-wait): removed likewise.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include <curl/curl.h>

#include <palitra/detail/cancel.hpp>
#include <palitra/detail/loop_hooks.hpp>
#include <palitra/http.hpp>

#include "curl_driver.hpp"
#include "runtime/loop.hpp"
#include "runtime/loop_affine.hpp"

namespace palitra::http {
namespace detail {

namespace pd = palitra::detail;

struct client_core final : pd::loop_affine {
  explicit client_core(client_options o);
  ~client_core() {
    for (CURL* e : idle_easies) curl_easy_cleanup(e);
  }

  client_options opts;
  pd::loop_resident resident;          // H0
  std::unique_ptr<curl_driver> driver; // created at the first send, on the loop
  // Easy handles of ended transfers, reset and kept for the next ones
  // (loop thread): a request then costs no curl_easy_init, ~25 fewer
  // allocations (bench/http.cpp). At most max_connections are kept.
  std::vector<CURL*> idle_easies;

  // stats(): written on the loop, read anywhere; relaxed, a snapshot.
  std::atomic<std::uint64_t> requests{0}, in_flight{0}, connections{0}, bytes{0};
  void bump(std::atomic<std::uint64_t>& a, std::int64_t by) noexcept {
    // relaxed: single writer (the loop), readers want a value, not an order.
    a.store(a.load(std::memory_order_relaxed) + static_cast<std::uint64_t>(by),
            std::memory_order_relaxed);
  }
};

namespace {

void global_init() {
  static std::once_flag once;
  // Thread-safe in libcurl >= 7.84 built with CURL_VERSION_THREADSAFE
  // (Debian 12's 7.88 is); call_once covers older builds. Never cleaned up:
  // other code in the process may use curl too.
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// The last reference (loop_affine R2), on the home loop: the multi closes
// its connections, each leaving the reactor first (R3).
void final_on_loop(pd::loop_affine& a) noexcept {
  auto* c = static_cast<client_core*>(&a);
  // Registered: H0 has not run, the loop is alive and this is its thread.
  if (c->resident.registered) c->home()->remove_resident(c->resident);
  delete c;
}

// Never used, or its loop is gone (H0 made the driver dead): no reactor.
void final_in_place(pd::loop_affine& a) noexcept { delete static_cast<client_core*>(&a); }

void on_loop_exit(pd::loop_resident& r) noexcept {
  auto* c = static_cast<client_core*>(r.ctx); // H0: the core outlives its loop
  if (c->driver) c->driver->leave_loop();
}

} // namespace

client_core::client_core(client_options o)
    : loop_affine("palitra::http::client", &final_on_loop, &final_in_place), opts(std::move(o)) {}

namespace {

pd::loop& enter(client_core& c, const char* what) {
  pd::loop& l = c.enter(what);
  if (!c.driver) { // the first send on this loop
    global_init();
    c.driver = std::make_unique<curl_driver>(l, static_cast<long>(c.opts.max_connections),
                                             static_cast<long>(c.opts.max_connections_per_host));
    c.resident.on_loop_exit = &on_loop_exit;
    c.resident.ctx = &c;
    l.add_resident(c.resident);
  }
  return l;
}

long to_ms(std::chrono::nanoseconds d) noexcept {
  return static_cast<long>(std::chrono::ceil<std::chrono::milliseconds>(d).count());
}

/// One send's transfer: the easy handle, its buffers, its wait.
class transfer final : public transfer_base {
public:
  transfer(client_core& c, pd::loop& l, request& r) : c_(c), l_(l), r_(r) {
    if (!c.idle_easies.empty()) {
      easy = c.idle_easies.back();
      c.idle_easies.pop_back();
    } else {
      easy = curl_easy_init();
      if (easy == nullptr) throw palitra::error("palitra::http::client: curl_easy_init failed");
    }
  }
  ~transfer() {
    if (added_) c_.driver->remove(*this); // a frame destroyed mid-wait
    if (hooked_) item_.chain->disarm();
    // Counted however the transfer ended: a timed-out or cancelled one may
    // have opened a connection too.
    long conns = 0;
    curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &conns);
    c_.bump(c_.connections, conns);
    curl_slist_free_all(headers_);
    give_back();
  }
  transfer(const transfer&) = delete;
  transfer& operator=(const transfer&) = delete;

  void setup() {
    const client_options& o = c_.opts;
    c_.driver->adopt(easy);
    curl_easy_setopt(easy, CURLOPT_URL, r_.url.c_str());
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf_);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, o.user_agent.c_str());
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, o.follow_redirects ? 1L : 0L);
    curl_easy_setopt(easy, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, std::max(1L, to_ms(o.connect_timeout)));
    const auto whole = r_.timeout.count() > 0 ? r_.timeout : o.timeout;
    if (whole.count() > 0) curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, std::max(1L, to_ms(whole)));
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, o.verify_tls ? 1L : 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, o.verify_tls ? 2L : 0L);
    if (!o.ca_file.empty()) curl_easy_setopt(easy, CURLOPT_CAINFO, o.ca_file.c_str());
    curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(o.max_response_bytes));
    curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, ""); // what this libcurl decodes
    // https: a request to a host whose connection is still being set up
    // waits to learn whether it multiplexes (HTTP/2 through ALPN) instead
    // of opening another, so a fan-out to one h2 host uses one connection.
    // Not for http://, which is HTTP/1.1 here (no prior knowledge): there a
    // waiting request was measured queueing behind another's response (a
    // fan-out of 5 opened 4 connections, the 5th request waited 20 ms).
    if (r_.url.compare(0, 8, "https://") == 0) curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
    // A cancelled transfer never joins a resolver thread on the loop: with
    // QUICK_EXIT, removing a handle mid-resolve forgets the thread instead
    // (curl #8515; CURLOPT_QUICK_EXIT, libcurl >= 7.87).
    curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);

    const std::string& m = r_.method;
    if (m == "GET") {
      curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    } else if (m == "HEAD") {
      curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    } else {
      if (m != "POST") curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, m.c_str());
      if (m == "POST" || !r_.body.empty()) {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, r_.body.data());
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r_.body.size()));
      }
    }
    for (const auto& [k, v] : r_.headers) append_header(k + ": " + v);
    // No "Expect: 100-continue" round trip before a body (curl adds it
    // above 1 KiB and waits up to 1 s for servers that never answer it).
    if (!r_.body.empty()) append_header("Expect:");
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers_);
  }

  // ---- the wait
  bool await_ready() const noexcept { return false; }
  template <class P> bool await_suspend(std::coroutine_handle<P> h) {
    item_.chain = pd::chain_of(h);
    if (item_.chain != nullptr && item_.chain->cancelled()) return false;
    item_.handle = h;
    c_.driver->add(*this);
    added_ = true;
    if (item_.chain != nullptr) {
      item_.chain->arm(&on_cancel, this);
      hooked_ = true;
    }
    return true;
  }
  void await_resume() const {
    if (item_.chain != nullptr && item_.chain->cancelled()) pd::throw_cancelled("palitra::http::client::send");
  }

  void done(CURLcode result) noexcept override {
    result_ = result;
    added_ = false;
    if (hooked_) {
      item_.chain->disarm();
      hooked_ = false;
    }
    l_.schedule(item_);
  }

  response take_response() {
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    c_.bump(c_.bytes, static_cast<std::int64_t>(body_.size()));
    if (result_ != CURLE_OK) fail();
    response out;
    out.status = static_cast<int>(status);
    // The final response's own header lines (after redirects: request -1),
    // parsed by curl (curl_easy_nextheader, libcurl >= 7.83).
    for (curl_header* h = nullptr; (h = curl_easy_nextheader(easy, CURLH_HEADER, -1, h)) != nullptr;)
      out.headers.emplace_back(h->name, h->value);
    out.body = std::move(body_);
    return out;
  }

private:
  [[noreturn]] void fail() {
    const std::string what = "palitra::http: " + r_.method + " " + r_.url + ": ";
    const std::error_code ec(static_cast<int>(result_), error_category());
    if (result_ == CURLE_OPERATION_TIMEDOUT)
      throw palitra::timeout_error(what + "timed out (" + errbuf_ + ")");
    if (too_big_ || result_ == CURLE_FILESIZE_EXCEEDED)
      throw palitra::io_error(what + "the response body is larger than max_response_bytes (" +
                                  std::to_string(c_.opts.max_response_bytes) + ")",
                              ec);
    // io_error appends ": " + ec.message(), which is curl_easy_strerror:
    // keep curl's detail (errbuf) without that text repeated at its end.
    std::string detail = errbuf_;
    const std::string generic = curl_easy_strerror(result_);
    if (detail.size() >= generic.size() &&
        detail.compare(detail.size() - generic.size(), generic.size(), generic) == 0)
      detail.resize(detail.size() - generic.size());
    while (!detail.empty() && (detail.back() == ' ' || detail.back() == ':')) detail.pop_back();
    throw palitra::io_error(what.substr(0, what.size() - 2) + (detail.empty() ? "" : " (" + detail + ")"), ec);
  }

  // Out of the multi by now: reset (options only; connections live in the
  // multi's cache) and keep it, or free it past the cap.
  void give_back() noexcept {
    if (c_.idle_easies.size() < c_.opts.max_connections) {
      curl_easy_reset(easy);
      try {
        c_.idle_easies.push_back(easy);
        return;
      } catch (...) {
      }
    }
    curl_easy_cleanup(easy);
  }

  void append_header(const std::string& line) {
    curl_slist* n = curl_slist_append(headers_, line.c_str());
    if (n == nullptr) throw std::bad_alloc();
    headers_ = n;
  }

  static std::size_t on_body(char* p, std::size_t size, std::size_t n, void* self) noexcept {
    auto* t = static_cast<transfer*>(self);
    const std::size_t len = size * n;
    if (t->body_.size() + len > t->c_.opts.max_response_bytes) {
      t->too_big_ = true;
      return 0; // CURLE_WRITE_ERROR: the transfer ends
    }
    try {
      t->body_.append(p, len);
    } catch (...) {
      return 0;
    }
    return len;
  }

  static void on_cancel(void* self) noexcept {
    auto* t = static_cast<transfer*>(self);
    t->hooked_ = false; // deliver() cleared the hook
    t->c_.driver->remove(*t); // not inside a curl callback (R1)
    t->added_ = false;
    t->l_.schedule(t->item_);
  }

  client_core& c_;
  pd::loop& l_;
  request& r_;
  curl_slist* headers_ = nullptr;
  std::string body_;
  char errbuf_[CURL_ERROR_SIZE] = {};
  CURLcode result_ = CURLE_OK;
  bool added_ = false;
  bool hooked_ = false;
  bool too_big_ = false;
  pd::ready_item item_;
};

/// A send's use of the core while it runs (its affine_ref keeps the core
/// alive from the task's creation).
class use {
public:
  use(client_core* c, const char* what) : c_(c) {
    if (c == nullptr) throw palitra::error(std::string(what) + ": the client was moved from");
    l_ = &enter(*c, what);
    c->bump(c->requests, 1);
    c->bump(c->in_flight, 1);
  }
  ~use() { c_->bump(c_->in_flight, -1); }
  use(const use&) = delete;
  use& operator=(const use&) = delete;
  client_core& core() const noexcept { return *c_; }
  pd::loop& home() const noexcept { return *l_; }

private:
  client_core* c_;
  pd::loop* l_ = nullptr;
};

task<response> send_impl(pd::affine_ref ref, request r) {
  constexpr const char* what = "palitra::http::client::send";
  auto* c = static_cast<client_core*>(ref.get());
  if (r.url.find("://") == std::string::npos)
    throw palitra::error(std::string(what) + ": '" + r.url +
                         "' has no scheme; write http://... or https://...");
  use u(c, what);
  transfer t(u.core(), u.home(), r);
  t.setup();
  co_await t;
  co_return t.take_response();
}

} // namespace
} // namespace detail

// ---- public API -------------------------------------------------------------------

client::client(client_options o) : core_(new detail::client_core(std::move(o))) {}

client::~client() {
  // The owner's reference (loop_affine R2): requests in flight keep the
  // core; the last one out cleans up on the loop (or in place, H2).
  if (core_ != nullptr) std::exchange(core_, nullptr)->unref();
}

client& client::operator=(client&& o) noexcept {
  if (this != &o) {
    client gone(std::move(*this));
    core_ = std::exchange(o.core_, nullptr);
  }
  return *this;
}

task<response> client::send(request r) {
  return detail::send_impl(palitra::detail::affine_ref(core_), std::move(r));
}

task<response> client::get(std::string url, http::headers h) {
  request r;
  r.url = std::move(url);
  r.headers = std::move(h);
  return send(std::move(r));
}

task<response> client::post(std::string url, std::string body, std::string content_type,
                            http::headers h) {
  request r;
  r.method = "POST";
  r.url = std::move(url);
  r.body = std::move(body);
  r.headers = std::move(h);
  r.headers.emplace_back("Content-Type", std::move(content_type));
  return send(std::move(r));
}

client_stats client::stats() const noexcept {
  client_stats s;
  if (core_ == nullptr) return s;
  // relaxed: counters (see client_core::bump).
  s.requests = core_->requests.load(std::memory_order_relaxed);
  s.in_flight = core_->in_flight.load(std::memory_order_relaxed);
  s.connections_opened = core_->connections.load(std::memory_order_relaxed);
  s.bytes_received = core_->bytes.load(std::memory_order_relaxed);
  return s;
}

// ---- response, errors ---------------------------------------------------------------

std::string_view response::header(std::string_view name) const noexcept {
  for (const auto& [k, v] : headers)
    if (k.size() == name.size() &&
        std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
        }))
      return v;
  return {};
}

void response::raise_for_status() const {
  if (status >= 400)
    throw status_error(status, body, "palitra::http: the response has status " + std::to_string(status));
}

status_error::status_error(int status, std::string body, const std::string& what)
    : palitra::error(what), status_(status), body_(std::move(body)) {}

namespace {
class curl_category final : public std::error_category {
public:
  const char* name() const noexcept override { return "palitra.http (libcurl)"; }
  std::string message(int c) const override { return curl_easy_strerror(static_cast<CURLcode>(c)); }
};
} // namespace

const std::error_category& error_category() noexcept {
  static const curl_category c;
  return c;
}

} // namespace palitra::http
