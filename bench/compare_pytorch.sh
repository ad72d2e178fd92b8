#!/usr/bin/env bash
# polyak vs PyTorch on the paper-preset copy model, same machine, same threads.
#   bench/compare_pytorch.sh [--model linear|softmax] [--threads N] [--steps N] [--rounds N]
# Each round runs `polyak bench` and then bench/torch_copy.py and prints the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
model=linear threads=$(nproc) steps=10 rounds=3
while (($#)); do
  case $1 in
    --model) model=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "compare_pytorch.sh: unknown argument '$1', expected --model, --threads, --steps or --rounds" >&2; exit 2 ;;
  esac
done
# PyTorch from Debian with OpenBLAS's OpenMP build. Without OpenBLAS, Debian's torch uses
# the reference BLAS (about 3 GFLOP/s here); with the pthread build, OpenBLAS's own thread
# pool fights PyTorch's OpenMP threads (about 2.5x slower steps). Only the PyTorch process
# is pointed at the OpenMP build; the system's libblas choice is left alone.
missing=()
for p in python3-torch libopenblas0-openmp; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi
openblas_dir=/usr/lib/x86_64-linux-gnu/openblas-openmp
torch_env=(env LD_LIBRARY_PATH="$openblas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
[[ -x build/release/polyak ]] || scripts/setup.sh
# Debian's OpenBLAS misdetects this CPU family and runs several times slower without this.
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Cooperlake}
json=$(mktemp)
trap 'rm -f "$json"' EXIT
for ((r = 1; r <= rounds; r++)); do
  echo "--- round $r/$rounds"
  build/release/polyak bench --model "$model" --threads "$threads" --steps "$steps" --json "$json"
  "${torch_env[@]}" /usr/bin/python3 bench/torch_copy.py --model "$model" --threads "$threads" --steps "$steps" \
    --polyak-json "$json"
done
