#!/usr/bin/env bash
# Builds polyak's libFuzzer targets (fuzz/) with clang in build/fuzz and runs them.
#   scripts/fuzz.sh TARGET|all [SECONDS]    TARGET: safetensors, config, cli or idx; default 60 s
# Each target runs for SECONDS over build/fuzz/corpus/TARGET, a copy of the seed corpus
# fuzz/corpus/TARGET to which libFuzzer adds the inputs that reach new code, with the
# dictionary fuzz/TARGET.dict (the format's keywords); crash, leak and timeout reproducers
# go to build/fuzz/artifacts/TARGET/. `all` runs the targets one
# after the other. Extra libFuzzer flags can be given in POLYAK_FUZZ_FLAGS (e.g. -jobs=2).
# Installs clang 16 (Debian 12's clang 14 cannot capture structured bindings in lambdas, a
# C++20 feature polyak uses), its libFuzzer runtime and OpenMP through apt when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

targets_all=(safetensors config cli idx)
usage() {
  echo "usage: scripts/fuzz.sh safetensors|config|cli|idx|all [SECONDS]" >&2
  exit 2
}
(($# >= 1 && $# <= 2)) || usage
case $1 in
  all) targets=("${targets_all[@]}") ;;
  safetensors | config | cli | idx) targets=("$1") ;;
  *) usage ;;
esac
seconds=${2:-60}
[[ $seconds =~ ^[0-9]+$ ]] || usage

packages=(clang-16 libclang-rt-16-dev libomp-16-dev cmake ccache libeigen3-dev nlohmann-json3-dev
          libcli11-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "fuzz: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

build=build/fuzz
jobs=${POLYAK_JOBS:-$(nproc)}
CC=clang-16 CXX=clang++-16 cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DPOLYAK_FUZZ=ON \
  -DPOLYAK_CUDA=OFF -DPOLYAK_WERROR=OFF -DPOLYAK_BUILD_TESTS=OFF -DPOLYAK_BUILD_BENCH=OFF \
  -DPOLYAK_BUILD_EXAMPLES=OFF -DPOLYAK_BUILD_CLI=ON >/dev/null
cmake --build "$build" -j "$jobs" --target "${targets[@]/#/fuzz_}"

for t in "${targets[@]}"; do
  corpus=$build/corpus/$t
  artifacts=$build/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  cp -n fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  log=$build/fuzz-$t.log
  echo "fuzz: $t for ${seconds}s over $corpus (log: $log)"
  # libFuzzer exits non-zero on a finding; report it after the statistics.
  status=0
  # shellcheck disable=SC2086  # POLYAK_FUZZ_FLAGS is a list of flags
  "$build/fuzz_$t" "$corpus" -dict="fuzz/$t.dict" -max_total_time="$seconds" \
    -print_final_stats=1 -artifact_prefix="$artifacts/" -timeout=10 -rss_limit_mb=4096 \
    ${POLYAK_FUZZ_FLAGS:-} \
    >"$log" 2>&1 || status=$?
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)" \
    "$log" || true
  grep -E "^#[0-9]+[[:space:]]+DONE" "$log" | tail -n 1 || true
  echo "fuzz: $t: corpus $(find "$corpus" -type f | wc -l) files, exit status $status"
  if ((status != 0)); then
    echo "fuzz: $t found a problem; the reproducer is in $artifacts/ and the report in $log" >&2
    exit "$status"
  fi
done
