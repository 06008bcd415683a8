// palitra — replay driver for the fuzz targets when they are not built with
// -fsanitize=fuzzer (any compiler): runs every file named on the command line,
// or every regular file of every directory named there, once through
// LLVMFuzzerTestOneInput, in name order (so a failure is reproducible).
//
//   fuzz_ops corpus/fuzz_ops            replay the committed corpus (ctest)
//   fuzz_ops crashes/fuzz_ops/crash-x   replay one input
//
// A target signals a model mismatch by aborting (fuzz_check.hpp), as under
// libFuzzer; this driver exits non-zero if no input was found at all, so a
// missing corpus is not a silent pass.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
// Optional, as in libFuzzer: a target may define it for one-time setup.
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));

namespace {

std::vector<char> read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

} // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  namespace fs = std::filesystem;
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (!arg.empty() && arg[0] == '-') continue; // libFuzzer flags: ignored here
    std::error_code ec;
    if (fs::is_directory(arg, ec)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(arg, ec))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      inputs.insert(inputs.end(), files.begin(), files.end());
    } else if (fs::is_regular_file(arg, ec)) {
      inputs.emplace_back(arg);
    } else {
      std::fprintf(stderr, "replay: %s: no such file or directory\n", arg.c_str());
      return 2;
    }
  }
  if (inputs.empty()) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...  (found no input)\n", argv[0]);
    return 2;
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& p : inputs) {
    const std::vector<char> bytes = read_all(p);
    // Printed before running, so the input of a crash is the last line.
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", p.c_str(), bytes.size());
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "replay: %zu inputs passed in %.2f s\n", inputs.size(), secs);
  return 0;
}
