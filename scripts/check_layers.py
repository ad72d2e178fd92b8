#!/usr/bin/env python3
"""Checks polyak's layering from the sources: every "polyak/<folder>/..." include of a
library folder names a folder that it may depend on.

    core  ←  ops  ←  nn  ←  models  ←  cli
      ↑       ↑
    cuda    optim        data (core only)

ops/attention is part of ops. The build enforces the same graph (each layer's CMake target
sees only its own and lower layers' headers); this script says which file and line breaks it
without building, and runs as the CTest test layers.include_graph.

    scripts/check_layers.py [SOURCE_DIR]      (default: the folder above this script)

Prints one line per offending include and exits 1 when there is any, 0 otherwise.
"""
import pathlib
import re
import sys

# folder → the folders its files may include from (its own among them).
ALLOWED = {
    "core": {"core"},
    "ops": {"core", "ops"},
    "nn": {"core", "ops", "nn"},
    "models": {"core", "ops", "nn", "models"},
    "optim": {"core", "ops", "optim"},
    "data": {"core", "data"},
    "cuda": {"core", "cuda"},
    "cli": {"core", "ops", "nn", "models", "optim", "data", "cli"},
}
SOURCE_SUFFIXES = {".h", ".hpp", ".cpp", ".cc", ".cu", ".cuh"}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]polyak/([^">]+)[">]')


def check(root: pathlib.Path) -> list[str]:
    problems = []
    for layer, allowed in ALLOWED.items():
        folder = root / layer
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix not in SOURCE_SUFFIXES or not path.is_file():
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                match = INCLUDE.match(line)
                if not match:
                    continue
                target = match.group(1)
                top = target.split("/")[0] if "/" in target else target
                if top in allowed:
                    continue
                rel = path.relative_to(root)
                if "/" not in target:  # the umbrella polyak/polyak.h
                    why = "the umbrella header is for programs, not for the library's layers"
                else:
                    why = f"{layer} may include {', '.join(sorted(allowed))} only"
                problems.append(f"{rel}:{number}: includes polyak/{target} ({why})")
    return problems


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent)
    problems = check(root.resolve())
    for p in problems:
        print(p)
    if problems:
        print(f"check_layers: {len(problems)} include(s) against the layering", file=sys.stderr)
        return 1
    print("check_layers: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
