// Every file of the seed corpus fuzz/corpus/<target>/ (seeds, inputs that reached new code
// while fuzzing, and the reproducers of every bug fuzzing found) run through the target's
// LLVMFuzzerTestOneInput, compiled here without libFuzzer (tests/fuzz/CMakeLists.txt). A
// target aborts on a finding and lets through only the exceptions its parser must not
// throw, so a regression fails here as a crash or an escaping exception.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int polyak_fuzz_safetensors(const uint8_t* data, size_t size);
extern "C" int polyak_fuzz_config(const uint8_t* data, size_t size);
extern "C" int polyak_fuzz_cli(const uint8_t* data, size_t size);
extern "C" int polyak_fuzz_idx(const uint8_t* data, size_t size);

namespace {

using FuzzTarget = int (*)(const uint8_t*, size_t);

// Runs every file of fuzz/corpus/<name>/ through `target`; returns how many ran.
size_t replay(const std::string& name, FuzzTarget target) {
  const std::filesystem::path dir = std::filesystem::path(POLYAK_FUZZ_CORPUS) / name;
  REQUIRE_MESSAGE(std::filesystem::is_directory(dir), dir.string(), " is not a directory");
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (const std::filesystem::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    REQUIRE_MESSAGE(in.is_open(), "cannot read ", file.string());
    const std::vector<char> bytes{std::istreambuf_iterator<char>(in),
                                  std::istreambuf_iterator<char>()};
    INFO("corpus file ", file.string(), " (", bytes.size(), " bytes)");
    int status = -1;
    CHECK_NOTHROW(status = target(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
    CHECK(status == 0);
  }
  return files.size();
}

}  // namespace

// At least the seeds must be there: an empty or missing corpus folder fails rather than
// passing without running anything.
TEST_CASE("fuzz corpus: safetensors (parse_safetensors)") {
  CHECK(replay("safetensors", polyak_fuzz_safetensors) >= 10);
}

TEST_CASE("fuzz corpus: config (config_from_json, config_to_json round trip)") {
  CHECK(replay("config", polyak_fuzz_config) >= 10);
}

TEST_CASE("fuzz corpus: cli (parse_command_line)") {
  CHECK(replay("cli", polyak_fuzz_cli) >= 10);
}

TEST_CASE("fuzz corpus: idx (read_idx, raw and gzip)") {
  CHECK(replay("idx", polyak_fuzz_idx) >= 10);
}
