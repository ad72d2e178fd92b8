// libFuzzer target: polyak::cli::parse_command_line (cli/options.h), the options of the
// polyak program, on arbitrary argument lists: the input split at '\0' and '\n' (one
// argument per line in the corpus files).
//
// polyak::Error (a bad flag or value) and cli::HelpRequested (--help, --version) are the
// expected answers. Anything else escaping, a crash, a sanitizer report or a hang is a
// finding.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cli/options.h"
#include "polyak/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args;
  std::string arg;
  for (size_t i = 0; i < size; ++i) {
    const char c = static_cast<char>(data[i]);
    if (c == '\0' || c == '\n') {
      args.push_back(arg);
      arg.clear();
    } else {
      arg += c;
    }
  }
  if (!arg.empty()) args.push_back(arg);
  try {
    (void)polyak::cli::parse_command_line(args);
  } catch (const polyak::Error&) {
  } catch (const polyak::cli::HelpRequested&) {
  }
  return 0;
}
