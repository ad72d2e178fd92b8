// Helpers shared by the cli suites.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "cli/options.h"

namespace polyak::testing {

inline cli::Command parse_cli(std::vector<std::string> args) {
  return cli::parse_command_line(args);
}

// Flags of a model small enough to train a few steps in milliseconds, on one thread so that
// two runs give the same numbers.
inline std::vector<std::string> tiny(std::vector<std::string> args,
                                     const std::filesystem::path& out) {
  for (const char* a :
       {"--steps",        "6", "--length",  "16", "--batch", "4",  "--layers",     "2",
        "--heads",        "2", "--d-model", "16", "--ff",    "32", "--eval-every", "3",
        "--eval-batches", "1", "--threads", "1",  "--quiet"})
    args.emplace_back(a);
  args.emplace_back("--out");
  args.push_back(out.string());
  return args;
}

}  // namespace polyak::testing
