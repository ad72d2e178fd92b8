#!/usr/bin/env bash
# polyak as a consumer sees it.
#   check_package.sh SOURCE_DIR BUILD_DIR WORK_DIR INITIAL_CACHE
# SOURCE_DIR: polyak's sources; BUILD_DIR: a built polyak, which is installed; WORK_DIR:
# where the consumers are built (kept, so that a rerun rebuilds only what changed);
# INITIAL_CACHE: compiler, flags and build type for the consumers, and whether BUILD_DIR
# has the CUDA backend (cmake -C; tests/package/CMakeLists.txt writes it).
#
#  1. cmake --install BUILD_DIR into a fresh prefix. Its include/ must hold only polyak/
#     and be the one include folder of polyak::polyak; no installed header may include
#     Eigen, nlohmann/json or the CUDA runtime, and every "polyak/..." include in them must
#     be installed; the package's CMake files must name neither Eigen nor nlohmann.
#  2. The README's library snippet becomes a program (snippet_to_main.sh).
#  3. tests/package/consumer builds it and main.cpp through find_package(polyak) from the
#     prefix, and 4. through add_subdirectory(SOURCE_DIR).
# Each program runs in an empty folder (the snippet writes files) and must exit 0.
# CMAKE (default: cmake) is the cmake to use; CMAKE_BUILD_PARALLEL_LEVEL (default 2) the jobs.
set -euo pipefail

if [[ $# -ne 4 ]]; then
  echo "usage: $0 SOURCE_DIR BUILD_DIR WORK_DIR INITIAL_CACHE" >&2
  exit 2
fi
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
mkdir -p "$3"
work=$(cd "$3" && pwd)
initial_cache=$4
cmake=${CMAKE:-cmake}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}

fail() {
  echo "check_package: FAILED: $*" >&2
  exit 1
}

# step LOG WHAT COMMAND...: runs COMMAND with its output in LOG; on failure prints WHAT,
# the command and the end of LOG.
step() {
  local log=$1 what=$2
  shift 2
  if ! "$@" >"$log" 2>&1; then
    echo "check_package: FAILED: $what" >&2
    echo "  command: $*" >&2
    echo "  last lines of $log:" >&2
    tail -n 60 "$log" | sed 's/^/    /' >&2
    exit 1
  fi
}

# run_in_empty_dir NAME PROGRAM: runs PROGRAM in a fresh folder WORK_DIR/run/NAME.
run_in_empty_dir() {
  local name=$1 program=$2
  local dir="$work/run/$name"
  rm -rf "$dir"
  mkdir -p "$dir"
  local rc=0
  (cd "$dir" && "$program") || rc=$?
  ((rc == 0)) || fail "$name ($program, run in $dir) exited with $rc"
  echo "check_package: $name ran"
}

# ---- 1. the install tree -----------------------------------------------------------------
prefix="$work/prefix"
rm -rf "$prefix"
step "$work/install.log" "cmake --install $build" "$cmake" --install "$build" --prefix "$prefix"

[[ -d $prefix/include ]] || fail "$prefix has no include/"
top=$(find "$prefix/include" -mindepth 1 -maxdepth 1 -printf '%f ')
[[ $top == "polyak " ]] || fail "$prefix/include holds $top, not only polyak/"

bad=$(grep -rlE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](Eigen/|unsupported/Eigen/|nlohmann/|cuda_runtime|cublas)' \
        "$prefix/include" || true)
[[ -z $bad ]] || fail "installed headers include Eigen, nlohmann/json or the CUDA runtime:
$bad"

missing=""
while read -r header; do
  [[ -f $prefix/include/$header ]] || missing+="  $header"$'\n'
done < <(grep -rhoE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"polyak/[^"]+"' "$prefix/include" |
         sed -E 's/.*"(polyak\/[^"]+)"/\1/' | sort -u)
[[ -z $missing ]] || fail "installed headers include headers that are not installed:
$missing"

config_dir=$(dirname "$(find "$prefix" -name polyakConfig.cmake -print -quit)")
[[ $config_dir != . ]] || fail "no polyakConfig.cmake under $prefix"
ls "$config_dir"/polyakTargets*.cmake >/dev/null 2>&1 || fail "no polyakTargets*.cmake in $config_dir"
bad=$(grep -liE 'eigen|nlohmann' "$config_dir"/*.cmake || true)
[[ -z $bad ]] || fail "the installed package names Eigen or nlohmann:
$(grep -niE 'eigen|nlohmann' "$config_dir"/*.cmake)"
# shellcheck disable=SC2016  # the literal text of the exported targets file
only_include='${_IMPORT_PREFIX}/include'
# polyak::polyak links one target per layer (polyak::polyak_core, …): every one of them
# gives consumers <prefix>/include and nothing else.
includes=$(sed -n 's/^ *INTERFACE_INCLUDE_DIRECTORIES "\(.*\)"$/\1/p' "$config_dir/polyakTargets.cmake" |
           sort -u)
[[ $includes == "$only_include" ]] ||
  fail "polyak's targets give consumers the include folders '$includes', not only <prefix>/include"
echo "check_package: install tree ok ($prefix)"

# ---- 2. the README's library snippet as a program ----------------------------------------
snippet="$work/readme_snippet.cpp"
"$(dirname "$0")/snippet_to_main.sh" "$src/README.md" "$snippet" ||
  fail "could not extract the library snippet from $src/README.md"

# ---- 3. find_package(polyak) from the prefix ---------------------------------------------
consumer="$src/tests/package/consumer"
installed="$work/find_package"
step "$work/find_package.configure.log" "configure the consumer with find_package(polyak)" \
  "$cmake" -C "$initial_cache" -S "$consumer" -B "$installed" -DCMAKE_PREFIX_PATH="$prefix" \
  -DPOLYAK_CONSUMER_MODE=find_package -DPOLYAK_SNIPPET_SOURCE="$snippet"
found=$(sed -n 's/^polyak_DIR:[A-Z]*=//p' "$installed/CMakeCache.txt")
[[ $found == "$prefix"/* ]] || fail "find_package(polyak) found $found, not the package in $prefix"
step "$work/find_package.build.log" "build the consumer with find_package(polyak)" \
  "$cmake" --build "$installed"
run_in_empty_dir find_package.consumer "$installed/consumer"
run_in_empty_dir find_package.readme_snippet "$installed/readme_snippet"

# ---- 4. add_subdirectory(polyak) ---------------------------------------------------------
# Only the library is built (polyak's programs, tests, examples and benchmarks are off),
# and without CUDA, which saves the nvcc compile of its kernels: the CUDA backend is built
# and tested in polyak's own build, and step 3 links it where that build has it.
sub="$work/add_subdirectory"
step "$work/add_subdirectory.configure.log" "configure the consumer with add_subdirectory(polyak)" \
  "$cmake" -C "$initial_cache" -S "$consumer" -B "$sub" -DPOLYAK_CONSUMER_MODE=add_subdirectory \
  -DPOLYAK_SOURCE_DIR="$src" -DPOLYAK_SNIPPET_SOURCE="$snippet" -DPOLYAK_CUDA=OFF \
  -DPOLYAK_BUILD_TESTS=OFF -DPOLYAK_BUILD_BENCH=OFF -DPOLYAK_BUILD_EXAMPLES=OFF \
  -DPOLYAK_BUILD_CLI=OFF
step "$work/add_subdirectory.build.log" "build the consumer with add_subdirectory(polyak)" \
  "$cmake" --build "$sub"
run_in_empty_dir add_subdirectory.consumer "$sub/consumer"
run_in_empty_dir add_subdirectory.readme_snippet "$sub/readme_snippet"

echo "check_package: ok"
