#!/usr/bin/env bash
# Turns the README's library snippet into a program.
#   snippet_to_main.sh README.md OUT.cpp
# The snippet is the ```cpp block between the lines <!-- library-snippet:begin --> and
# <!-- library-snippet:end -->, taken verbatim: its preprocessor lines and using-directives
# go at file scope, every other line, in order, into the body of main(), which exits 0 when
# the snippet runs through and 1, printing the error, when it throws. #line directives
# point compiler errors at the README's own lines. OUT.cpp is rewritten only when it changes,
# so that an unchanged snippet is not compiled again.
set -euo pipefail

readme=$1
out=$2
[[ -f $readme ]] || { echo "snippet_to_main: no file $readme" >&2; exit 1; }
trap 'rm -f "$out.tmp"' EXIT

awk -v readme="$readme" -v program="$out" '
  # Emits `line` (README line `n`) into `part`, with a #line directive where the README
  # lines stop being consecutive.
  function keep(part, n, line) {
    if (next_line[part] != n) text[part] = text[part] sprintf("#line %d \"%s\"\n", n, readme)
    text[part] = text[part] line "\n"
    next_line[part] = n + 1
  }
  # Prints `s`, counting the lines of the program.
  function out(s) {
    printf "%s", s
    printed += gsub(/\n/, "\n", s)
  }
  # A #line directive that gives the next line of the program its own number and file.
  function back_to_program() {
    out(sprintf("#line %d \"%s\"\n", printed + 2, program))
  }
  /^<!-- library-snippet:begin -->[[:space:]]*$/ { begins++; inside = 1; next }
  /^<!-- library-snippet:end -->[[:space:]]*$/ { ends++; inside = 0; next }
  !inside { next }
  /^[[:space:]]*```/ { next }                              # the fences
  /^[[:space:]]*#/ || /^[[:space:]]*using[[:space:]]+namespace[[:space:]]/ { keep("head", NR, $0); next }
  { keep("body", NR, $0); if ($0 ~ /[^[:space:]]/) statements++ }
  END {
    if (begins != 1 || ends != 1) {
      printf "snippet_to_main: %s has %d begin and %d end markers of the library snippet, " \
             "not one of each\n", readme, begins, ends > "/dev/stderr"
      exit 1
    }
    if (statements == 0) {
      printf "snippet_to_main: the library snippet of %s has no statements\n", readme > "/dev/stderr"
      exit 1
    }
    out("// The library snippet of " readme ", as a program (tests/package/snippet_to_main.sh).\n")
    out("#include <polyak/polyak.h>\n\n#include <exception>\n#include <iostream>\n\n")
    out(text["head"])
    back_to_program()
    out("\nint main() {\n  try {\n")
    out(text["body"])
    back_to_program()
    out("  } catch (const std::exception& e) {\n")
    out("    std::cerr << \"README library snippet: \" << e.what() << \"\\n\";\n")
    out("    return 1;\n  }\n  return 0;\n}\n")
  }
' "$readme" >"$out.tmp"
if ! cmp -s "$out.tmp" "$out"; then
  mv "$out.tmp" "$out"
fi
