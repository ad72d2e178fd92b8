// The benchmarks' command lines, read with CLI11. Values are checked as they are read, so a
// bad one is reported as "<flag>: <what was seen>, expected <what is allowed>"; a bad command
// line exits with status 2, --help prints CLI11's help and exits with 0. A list is one
// argument, comma-separated (--sizes 4096,16384), as in the polyak program, so that a stray
// word after it is an error rather than one more item.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace polyak::bench {

// The items of a comma-separated list, empty ones kept ("a,,b" has three); "" has none.
inline std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  if (text.empty()) return items;
  for (size_t begin = 0;;) {
    const size_t comma = text.find(',', begin);
    items.push_back(text.substr(begin, comma - begin));
    if (comma == std::string::npos) return items;
    begin = comma + 1;
  }
}

inline std::string join(const std::vector<std::string>& items, const char* separator) {
  std::string text;
  for (const std::string& item : items) text += (text.empty() ? "" : separator) + item;
  return text;
}

// What is wrong with `text` as an integer ≥ min ("" when nothing is): the whole text, base 10.
inline std::string integer_problem(const std::string& text, int64_t min) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  if (error == std::errc() && stop == end && value >= min) return "";
  return "'" + text + "', expected an integer ≥ " + std::to_string(min);
}

// What is wrong with `text` as a finite number ≥ min (> min when `strict`).
inline std::string number_problem(const std::string& text, double min, bool strict) {
  double value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  if (error == std::errc() && stop == end && std::isfinite(value) &&
      (strict ? value > min : value >= min))
    return "";
  char bound[32];
  std::snprintf(bound, sizeof bound, "%g", min);
  return "'" + text + "', expected a number " + (strict ? "> " : "≥ ") + bound;
}

// Validators for CLI11's check(); CLI11 puts the flag in front of their message. Integers
// too large for the option's type are CLI11's own conversion error, which names the flag.
inline CLI::Validator integer_at_least(int64_t min) {
  return CLI::Validator([min](std::string& text) { return integer_problem(text, min); }, "");
}
inline CLI::Validator number_at_least(double min) {
  return CLI::Validator([min](std::string& text) { return number_problem(text, min, false); }, "");
}
inline CLI::Validator number_above(double min) {
  return CLI::Validator([min](std::string& text) { return number_problem(text, min, true); }, "");
}
inline CLI::Validator one_of(const std::vector<std::string>& allowed) {
  return CLI::Validator(
      [allowed](std::string& text) -> std::string {
        if (std::find(allowed.begin(), allowed.end(), text) != allowed.end()) return "";
        return "'" + text + "', expected one of: " + join(allowed, ", ");
      },
      "");
}

// The items of `text`, the list given to `flag`: at least one, none empty.
inline std::vector<std::string> list_items(const std::string& flag, const std::string& text,
                                           const std::string& expected) {
  const std::vector<std::string> items = split_list(text);
  if (items.empty()) throw CLI::ValidationError(flag, "empty, " + expected);
  for (const std::string& item : items)
    if (item.empty())
      throw CLI::ValidationError(flag, "'" + text + "' has an empty item, " + expected);
  return items;
}

// `flag` N,N,...: one argument, comma-separated integers ≥ min; replaces `values` (whose
// contents are the default shown in --help).
inline CLI::Option* add_integer_list(CLI::App& app, const std::string& flag,
                                     std::vector<int64_t>& values, int64_t min,
                                     const std::string& help) {
  std::vector<std::string> defaults;
  for (int64_t v : values) defaults.push_back(std::to_string(v));
  const std::string expected = "expected comma-separated integers ≥ " + std::to_string(min) +
                               ", e.g. " + join(defaults, ",");
  auto read = [&values, flag, min, expected](const std::string& text) {
    std::vector<int64_t> parsed;
    for (const std::string& item : list_items(flag, text, expected)) {
      if (!integer_problem(item, min).empty())
        throw CLI::ValidationError(flag, "has '" + item + "', " + expected);
      parsed.push_back(std::stoll(item));
    }
    values = parsed;
  };
  return app.add_option_function<std::string>(flag, read, help)
      ->type_name("N,N,...")
      ->default_str(join(defaults, ","));
}

// `flag` A,B,...: one argument, comma-separated names among `allowed`, each at most once;
// replaces `names` (whose contents are the default shown in --help).
inline CLI::Option* add_name_list(CLI::App& app, const std::string& flag,
                                  std::vector<std::string>& names,
                                  const std::vector<std::string>& allowed,
                                  const std::string& help) {
  const std::string expected = "expected comma-separated names among: " + join(allowed, ", ");
  auto read = [&names, flag, allowed, expected](const std::string& text) {
    const std::vector<std::string> items = list_items(flag, text, expected);
    for (auto item = items.begin(); item != items.end(); ++item) {
      if (std::find(allowed.begin(), allowed.end(), *item) == allowed.end())
        throw CLI::ValidationError(flag, "has '" + *item + "', " + expected);
      if (std::find(items.begin(), item, *item) != item)
        throw CLI::ValidationError(flag, "has '" + *item + "' twice, expected each at most once");
    }
    names = items;
  };
  return app.add_option_function<std::string>(flag, read, help)
      ->type_name("K,K,...")
      ->default_str(join(names, ","));
}

// The flags a parent passes when it re-executes itself, one process per row: --kind K (one of
// `kinds`) and, where rows are also per N, --n N; each of those two needs the other.
inline void add_child_flags(CLI::App& app, std::string& kind, const std::vector<std::string>& kinds,
                            int64_t* n = nullptr) {
  const char* group = "Child mode (the program runs itself with these, one process per row)";
  CLI::Option* kind_flag =
      app.add_option("--kind", kind, "measure this kind only")->group(group)->check(one_of(kinds));
  if (n == nullptr) return;
  CLI::Option* n_flag = app.add_option("--n", *n, "measure this N only")
                            ->group(group)
                            ->check(integer_at_least(1))
                            ->default_str("");  // not a default: child mode needs --n
  kind_flag->needs(n_flag);
  n_flag->needs(kind_flag);
}

// The settings every benchmark's App shares: defaults shown in --help, and a flag given
// twice takes its last value.
inline void set_option_defaults(CLI::App& app) {
  app.option_defaults()->always_capture_default()->multi_option_policy(
      CLI::MultiOptionPolicy::TakeLast);
}

// Reads the command line: --help prints the help and exits with 0; a bad command line prints
// what is wrong, naming the flag, and exits with 2.
inline void parse_or_exit(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    std::exit(0);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s\nRun with --help for more information.\n", app.get_name().c_str(),
                 e.what());
    std::exit(2);
  }
}

}  // namespace polyak::bench
