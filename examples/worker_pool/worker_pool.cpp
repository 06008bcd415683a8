// palitra example: a synchronous worker pool (Celery's situation). Worker
// threads take jobs from a queue; each job is plain sync code that calls
// palitra::run(process(job)), which fetches five upstream documents at once
// through one palitra::http::client shared by every worker, and returns a
// result record. For the same jobs it also times two baselines:
//   blocking  the five fetches one after another with blocking libcurl
//             calls (common/blocking_get.hpp: one reused handle per thread);
//   fresh     a fresh runner and client per job (asyncio.run per task).
//
// --prefork N: Celery's prefork pool instead. The parent, which has already
// used the global runner and holds pooled connections, forks N worker
// processes that take jobs from a pipe. Each child uses the global runner
// (palitra forgets the parent's in the child and creates a new one at the
// first run) and creates its own client after the fork, so no child touches
// a connection it inherited; the parent checks afterwards that its own
// pooled connections still serve it.
//
//   worker_pool [--jobs 64] [--workers 8] [--docs 5] [--delay-ms 20]
//               [--upstream URL] [--prefork N] [--rounds 3]
// Without --upstream it starts the example upstream (upstream/upstream.hpp).
// Exits 1 if any job failed.
#include <curl/curl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <palitra/http.hpp>
#include <palitra/palitra.hpp>

#include "../common/blocking_get.hpp"
#include "../upstream/upstream.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

struct settings {
  int jobs = 64;
  int workers = 8;
  int docs = 5;
  long delay_ms = 20;
  std::string upstream; ///< base URL; empty: the built-in upstream
  int prefork = 0;
  int rounds = 3; ///< of each way, interleaved; the median is printed
};

/// What a job returns. Trivially copyable: prefork children send it through a pipe.
struct result_record {
  std::int64_t job = -1;
  std::int64_t documents = 0; ///< fetched with status 200
  std::int64_t bytes = 0;     ///< their bodies
};

/// A job: documents job*docs+1 .. job*docs+docs, all at once through `c`.
/// Thread: the loop (through palitra::run). Throws: io_error, status_error.
palitra::task<result_record> process(palitra::http::client& c, std::string base, int job,
                                     int docs) {
  std::vector<palitra::task<palitra::http::response>> gets;
  for (int k = 1; k <= docs; ++k)
    gets.push_back(c.get(base + "/comments/" + std::to_string(job * docs + k)));
  result_record r{job};
  for (const palitra::http::response& res : co_await palitra::when_all(std::move(gets))) {
    res.raise_for_status();
    ++r.documents;
    r.bytes += static_cast<std::int64_t>(res.body.size());
  }
  co_return r;
}

/// The same job with blocking calls, one after another.
result_record process_blocking(const std::string& base, int job, int docs) {
  result_record r{job};
  for (int k = 1; k <= docs; ++k) {
    const std::string body = example::blocking_get::this_thread().get(
        base + "/comments/" + std::to_string(job * docs + k), std::chrono::seconds(30));
    ++r.documents;
    r.bytes += static_cast<std::int64_t>(body.size());
  }
  return r;
}

palitra::http::client_options pool_options(int concurrent) {
  palitra::http::client_options o;
  // every transfer of every worker in flight at once, none queued
  o.max_connections = o.max_connections_per_host = static_cast<std::size_t>(concurrent);
  return o;
}

/// The broker: job ids in, std::nullopt once closed and drained.
class job_queue {
public:
  void push(int job) {
    {
      std::lock_guard lock(m_);
      jobs_.push_back(job);
    }
    cv_.notify_one();
  }
  void close() {
    {
      std::lock_guard lock(m_);
      closed_ = true;
    }
    cv_.notify_all();
  }
  std::optional<int> pop() {
    std::unique_lock lock(m_);
    cv_.wait(lock, [&] { return closed_ || !jobs_.empty(); });
    if (jobs_.empty()) return std::nullopt;
    const int j = jobs_.front();
    jobs_.pop_front();
    return j;
  }

private:
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<int> jobs_;
  bool closed_ = false;
};

struct pool_run {
  double ms = 0;
  int ok = 0;
};

/// `workers` threads run `job` on every job id; a job ok is one that
/// returned all its documents.
pool_run run_pool(const settings& s, const std::function<result_record(int)>& job) {
  job_queue q;
  std::vector<result_record> results(static_cast<std::size_t>(s.jobs));
  const auto t0 = clock_type::now();
  std::vector<std::thread> workers;
  for (int w = 0; w < s.workers; ++w)
    workers.emplace_back([&] {
      while (const std::optional<int> j = q.pop()) {
        try {
          results[static_cast<std::size_t>(*j)] = job(*j);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "  job %d failed: %s\n", *j, e.what());
        }
      }
    });
  for (int j = 0; j < s.jobs; ++j) q.push(j);
  q.close();
  for (auto& t : workers) t.join();
  pool_run r;
  r.ms = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
  for (const auto& rec : results) r.ok += rec.documents == s.docs ? 1 : 0;
  return r;
}

int threaded(const settings& s, const std::string& base) {
  std::printf("worker_pool: %d jobs on %d worker threads; each job fetches %d upstream "
              "documents (%ld ms each); median of %d interleaved rounds\n\n",
              s.jobs, s.workers, s.docs, s.delay_ms, s.rounds);
  // One client for every worker thread and every round; the global runner's loop drives it.
  palitra::http::client shared(pool_options(s.workers * s.docs));
  std::atomic<std::uint64_t> fresh_connections{0};
  const std::uint64_t blocking_before = example::blocking_connections_opened.load();
  std::vector<pool_run> a, b, c;
  for (int round = 0; round < s.rounds; ++round) {
    a.push_back(run_pool(s, [&](int j) { return palitra::run(process(shared, base, j, s.docs)); }));
    b.push_back(run_pool(s, [&](int j) { return process_blocking(base, j, s.docs); }));
    c.push_back(run_pool(s, [&](int j) {
      palitra::runner r;                               // a loop thread per job
      palitra::http::client own(pool_options(s.docs)); // new connections per job
      result_record rec = r.run(process(own, base, j, s.docs));
      fresh_connections.fetch_add(own.stats().connections_opened, std::memory_order_relaxed);
      return rec;
    }));
  }
  const std::uint64_t connections[] = {shared.stats().connections_opened,
                                       example::blocking_connections_opened.load() - blocking_before,
                                       fresh_connections.load()};

  std::printf("| jobs run by | wall ms | jobs/s | upstream connections opened (%d rounds) | jobs ok |\n",
              s.rounds);
  std::printf("|---|---:|---:|---:|---:|\n");
  int failed = 0;
  const auto row = [&](const char* name, std::vector<pool_run>& runs, std::uint64_t conns) {
    int ok = 0;
    for (const auto& r : runs) ok += r.ok, failed += s.jobs - r.ok;
    std::sort(runs.begin(), runs.end(), [](const pool_run& x, const pool_run& y) { return x.ms < y.ms; });
    const double ms = runs[runs.size() / 2].ms;
    std::printf("| %s | %.0f | %.0f | %llu | %d/%d |\n", name, ms, s.jobs / (ms / 1000),
                static_cast<unsigned long long>(conns), ok, s.jobs * s.rounds);
    return ms;
  };
  const double ma = row("palitra::run, one shared client", a, connections[0]);
  const double mb = row("blocking calls, one after another", b, connections[1]);
  const double mc = row("fresh runner + client per job", c, connections[2]);
  std::printf("\nshared client: %.2fx the blocking calls' wall time, %.2fx fresh per job's; "
              "bound: %d waits of %ld ms = %d ms\n",
              ma / mb, ma / mc, (s.jobs + s.workers - 1) / s.workers, s.delay_ms,
              static_cast<int>((s.jobs + s.workers - 1) / s.workers * s.delay_ms));
  return failed == 0 ? 0 : 1;
}

// ---- --prefork N ------------------------------------------------------------------

/// A worker process: jobs (int) from `jobs_fd` until EOF, result records to
/// `results_fd`, then one record {-1, connections its client opened}.
[[noreturn]] void child(const settings& s, const std::string& base, int jobs_fd, int results_fd) {
  int rc = 0;
  if (palitra::is_runner_alive()) { // the parent's is never this process's
    std::fprintf(stderr, "  child %d: the inherited global runner is alive\n", getpid());
    rc = 1;
  }
  std::uint64_t connections = 0;
  {
    // Made after the fork: none of the parent's pooled connections is used here.
    palitra::http::client own(pool_options(s.docs));
    for (int job; read(jobs_fd, &job, sizeof job) == static_cast<ssize_t>(sizeof job);) {
      result_record r{job};
      try {
        r = palitra::run(process(own, base, job, s.docs)); // the global runner, new in this child
      } catch (const std::exception& e) {
        std::fprintf(stderr, "  child %d: job %d failed: %s\n", getpid(), job, e.what());
      }
      // <= PIPE_BUF: one atomic write, never interleaved with another child's
      if (write(results_fd, &r, sizeof r) != static_cast<ssize_t>(sizeof r)) rc = 1;
    }
    connections = own.stats().connections_opened;
  }
  palitra::shutdown_global_runner();
  const result_record last{-1, static_cast<std::int64_t>(connections), 0};
  if (write(results_fd, &last, sizeof last) != static_cast<ssize_t>(sizeof last)) rc = 1;
  // _exit: the parent's objects copied into this process (its upstream, its
  // client) are not this process's to destroy.
  _exit(rc);
}

int prefork(const settings& s, const std::string& base) {
  std::printf("worker_pool --prefork %d: %d jobs on %d worker processes; each job fetches %d "
              "upstream documents (%ld ms each)\n",
              s.prefork, s.jobs, s.prefork, s.docs, s.delay_ms);
  // The parent uses the global runner and keeps pooled connections open
  // across the fork, as a Celery master that did some async work would.
  palitra::http::client parents(pool_options(s.docs));
  palitra::run(process(parents, base, 0, s.docs));
  const std::uint64_t parents_before = parents.stats().connections_opened;

  int jobs[2], results[2];
  if (pipe(jobs) != 0 || pipe(results) != 0) {
    std::perror("pipe");
    return 1;
  }
  std::fflush(stdout); // or the children's copies of its buffer print again
  const auto t0 = clock_type::now();
  std::vector<pid_t> children;
  for (int i = 0; i < s.prefork; ++i) {
    const pid_t pid = fork();
    if (pid < 0) {
      std::perror("fork");
      return 1;
    }
    if (pid == 0) {
      close(jobs[1]);
      close(results[0]);
      child(s, base, jobs[0], results[1]);
    }
    children.push_back(pid);
  }
  close(jobs[0]);
  close(results[1]);
  std::vector<int> ids(static_cast<std::size_t>(s.jobs));
  for (int j = 0; j < s.jobs; ++j) ids[static_cast<std::size_t>(j)] = j;
  // one write of at most PIPE_BUF bytes per chunk: whole ints only
  for (std::size_t at = 0; at < ids.size(); at += 512)
    if (write(jobs[1], ids.data() + at, std::min<std::size_t>(512, ids.size() - at) * sizeof(int)) < 0)
      std::perror("write");
  close(jobs[1]); // EOF: the children finish and report

  int ok = 0, reports = 0;
  std::uint64_t child_connections = 0;
  for (result_record r; read(results[0], &r, sizeof r) == static_cast<ssize_t>(sizeof r);) {
    if (r.job < 0) {
      ++reports;
      child_connections += static_cast<std::uint64_t>(r.documents);
    } else {
      ok += r.documents == s.docs ? 1 : 0;
    }
  }
  close(results[0]);
  int failed_children = 0;
  for (const pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    failed_children += WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
  }
  const double ms = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();

  // The parent's pool after the children ran: its connections still serve it.
  palitra::run(process(parents, base, 1, s.docs));
  const bool parent_reused = parents.stats().connections_opened == parents_before;

  std::printf("wall %.0f ms (forks included), %.0f jobs/s; jobs ok %d/%d; children exited 0: %d/%d\n",
              ms, s.jobs / (ms / 1000), ok, s.jobs, s.prefork - failed_children, s.prefork);
  std::printf("upstream connections opened by the children: %llu (at most %d per child); "
              "the parent's pooled connections reused after the children ran: %s\n",
              static_cast<unsigned long long>(child_connections), s.docs,
              parent_reused ? "yes" : "no");
  return ok == s.jobs && failed_children == 0 && reports == s.prefork && parent_reused ? 0 : 1;
}

[[noreturn]] void usage() {
  std::fprintf(stderr, "usage: worker_pool [--jobs N] [--workers N] [--docs N] [--delay-ms MS]\n"
                       "                   [--upstream URL] [--prefork N] [--rounds N]\n");
  std::exit(2);
}

} // namespace

int main(int argc, char** argv) {
  palitra::runtime_guard guard;
  settings s;
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) usage();
    const std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "--jobs") s.jobs = std::atoi(v);
    else if (a == "--workers") s.workers = std::atoi(v);
    else if (a == "--docs") s.docs = std::atoi(v);
    else if (a == "--delay-ms") s.delay_ms = std::atol(v);
    else if (a == "--upstream") s.upstream = v;
    else if (a == "--prefork") s.prefork = std::atoi(v);
    else if (a == "--rounds") s.rounds = std::atoi(v);
    else usage();
  }
  if (s.jobs < 1 || s.jobs > 100000 || s.workers < 1 || s.workers > 256 || s.docs < 1 ||
      s.docs > 64 || s.delay_ms < 0 || s.prefork < 0 || s.prefork > 64 || s.rounds < 1 || s.rounds > 100)
    usage();

  curl_global_init(CURL_GLOBAL_DEFAULT); // before any thread
  std::unique_ptr<example::upstream> builtin;
  std::string base = s.upstream;
  if (base.empty()) {
    builtin = std::make_unique<example::upstream>(std::chrono::milliseconds(s.delay_ms));
    base = builtin->url();
  }
  return s.prefork > 0 ? prefork(s, base) : threaded(s, base);
}
