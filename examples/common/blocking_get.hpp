// palitra examples — the blocking baseline: a plain libcurl easy handle,
// no palitra. One handle per thread, reused for every call that thread
// makes, so its connection stays open between calls (what a sync server's
// thread with a requests.Session-like client does): the strongest
// blocking baseline, not one that pays a connect per call. Calls made one
// after another on a thread wait for each other; that is what this
// baseline measures.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>

#include <curl/curl.h>

namespace example {

/// New TCP connections opened by every blocking_get (CURLINFO_NUM_CONNECTS
/// summed), as http::client_stats::connections_opened counts them.
inline std::atomic<std::uint64_t> blocking_connections_opened{0};

/// A blocking_get that ran out of time (CURLE_OPERATION_TIMEDOUT).
struct blocking_timeout : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class blocking_get {
public:
  /// Call curl_global_init before the first one is made (on the main thread,
  /// before other threads start, for libcurl builds without thread-safe init).
  blocking_get() : easy_(curl_easy_init()) {
    if (easy_ == nullptr) throw std::runtime_error("curl_easy_init failed");
  }
  ~blocking_get() { curl_easy_cleanup(easy_); }
  blocking_get(const blocking_get&) = delete;
  blocking_get& operator=(const blocking_get&) = delete;

  /// The calling thread's handle (created on first use, cleaned up at the
  /// thread's exit).
  static blocking_get& this_thread() {
    thread_local blocking_get g;
    return g;
  }

  /// GET `url`, blocking for at most `timeout`; the body of a 200.
  /// Throws blocking_timeout, std::runtime_error (transport failure, a
  /// status other than 200).
  std::string get(const std::string& url, std::chrono::milliseconds timeout) {
    std::string body;
    curl_easy_setopt(easy_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(easy_, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L); // no SIGALRM from the resolver's timeout
    curl_easy_setopt(easy_, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<long long>(1, timeout.count())));
    curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, &append);
    curl_easy_setopt(easy_, CURLOPT_WRITEDATA, &body);
    const CURLcode rc = curl_easy_perform(easy_);
    long connects = 0;
    curl_easy_getinfo(easy_, CURLINFO_NUM_CONNECTS, &connects);
    blocking_connections_opened.fetch_add(static_cast<std::uint64_t>(connects),
                                          std::memory_order_relaxed); // a counter
    if (rc == CURLE_OPERATION_TIMEDOUT) throw blocking_timeout("GET " + url + ": timed out");
    if (rc != CURLE_OK) throw std::runtime_error(std::string("GET ") + url + ": " + curl_easy_strerror(rc));
    long status = 0;
    curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) throw std::runtime_error("GET " + url + ": status " + std::to_string(status));
    return body;
  }

private:
  static std::size_t append(char* p, std::size_t size, std::size_t n, void* body) {
    static_cast<std::string*>(body)->append(p, size * n);
    return size * n;
  }

  CURL* easy_;
};

} // namespace example
