#!/usr/bin/env bash
# polyak vs PyTorch on the paper-preset copy model, same machine, same threads.
#   bench/compare_pytorch.sh [--model KIND[,KIND...]] [--threads N] [--steps N] [--rounds N]
#                            [--device cpu|cuda|cuda:N] [--compile]
# Each round runs, per model kind, `polyak bench` and then bench/torch_copy.py and prints
# the polyak/PyTorch ratio. With several kinds, each round also prints every kind's step
# time relative to the first kind's (e.g. --model linear,momentum: momentum/linear), and
# the last lines give the medians over the rounds: the ratios to PyTorch, and each step as
# a share of the best GEMM its own bench run measured.
#
# --device cuda runs both on that GPU (`polyak bench --device`, torch_copy.py --device, TF32
# off); the PyTorch is then the first python3 on the PATH (or $PYTHON) that imports torch, and
# the Debian/OpenBLAS setup below is skipped. --compile times torch.compile on the PyTorch side.
# bench/device.sh runs this on a GPU machine, with the rest of the device benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
models=linear threads=$(nproc) steps=10 rounds=3 device=cpu compile=()
while (($#)); do
  case $1 in
    --model) models=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --compile) compile=(--compile); shift ;;
    *) echo "compare_pytorch.sh: unknown argument '$1', expected --model, --threads, --steps, --rounds, --device or --compile" >&2; exit 2 ;;
  esac
done
IFS=, read -r -a kinds <<<"$models"
# On the CPU: PyTorch from Debian with OpenBLAS's OpenMP build. Without OpenBLAS, Debian's
# torch uses the reference BLAS (about 3 GFLOP/s here); with the pthread build, OpenBLAS's own
# thread pool fights PyTorch's OpenMP threads (about 2.5x slower steps). Only the PyTorch
# process is pointed at the OpenMP build; the system's libblas choice is left alone. On a
# device: the PyTorch already installed there (the machine may have no network).
py=/usr/bin/python3 torch_env=()
if [[ $device != cpu ]]; then
  py=${PYTHON:-python3}
  if ! "$py" -c 'import torch' 2>/dev/null; then
    echo "compare_pytorch.sh: --device $device needs a PyTorch with CUDA, but $py cannot import torch" >&2
    exit 1
  fi
else
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
fi
[[ -x build/release/polyak ]] || scripts/setup.sh
# Debian's OpenBLAS misdetects this CPU family and runs several times slower without this.
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Cooperlake}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for ((r = 1; r <= rounds; r++)); do
  echo "--- round $r/$rounds"
  for kind in "${kinds[@]}"; do
    build/release/polyak bench --model "$kind" --threads "$threads" --steps "$steps" \
      --device "$device" --json "$dir/polyak-$kind-$r.json"
    "${torch_env[@]}" "$py" bench/torch_copy.py --model "$kind" --threads "$threads" \
      --steps "$steps" --device "$device" "${compile[@]}" --polyak-json "$dir/polyak-$kind-$r.json" \
      --json-out "$dir/torch-$kind-$r.json"
    if [[ ! -f $dir/torch-$kind-$r.json ]]; then  # torch_copy.py printed "skipped: <why>"
      echo "compare_pytorch.sh: no PyTorch figure for $kind, so no ratios"
      exit 0
    fi
  done
  "$py" - "$dir" "$r" "${kinds[@]}" <<'PY'
import json, sys
d, r, kinds = sys.argv[1], sys.argv[2], sys.argv[3:]
ms = {k: json.load(open(f"{d}/polyak-{k}-{r}.json"))["ms_per_step"] for k in kinds}
for k in kinds[1:]:
    print(f"round {r}: polyak {k}/{kinds[0]} step time: {ms[k] / ms[kinds[0]]:.3f} "
          f"({ms[k]:.1f} ms / {ms[kinds[0]]:.1f} ms)")
PY
done
"$py" - "$dir" "$rounds" "${kinds[@]}" <<'PY'
import json, statistics, sys
d, rounds, kinds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
load = lambda who, k, r, key="ms_per_step": json.load(open(f"{d}/{who}-{k}-{r}.json"))[key]
print(f"--- medians over {rounds} rounds")
for k in kinds:
    ours = [load("polyak", k, r) for r in range(1, rounds + 1)]
    theirs = [load("torch", k, r) for r in range(1, rounds + 1)]
    ratios = [a / b for a, b in zip(ours, theirs)]
    print(f"{k}: polyak median {statistics.median(ours):.1f} ms/step, pytorch median "
          f"{statistics.median(theirs):.1f} ms/step, ratio polyak/pytorch median {statistics.median(ratios):.3f} "
          f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)})")
for k in kinds:
    # The step's GFLOP/s as a share of the best GEMM that the same bench run measured.
    shares = [load("polyak", k, r, "percent_of_gemm") for r in range(1, rounds + 1)]
    print(f"{k}: polyak step at median {statistics.median(shares):.1f}% of the best GEMM of its run "
          f"(rounds: {', '.join(f'{x:.1f}%' for x in shares)})")
for k in kinds[1:]:
    rel = [load("polyak", k, r) / load("polyak", kinds[0], r) for r in range(1, rounds + 1)]
    print(f"polyak {k}/{kinds[0]} step time median {statistics.median(rel):.3f} "
          f"(rounds: {', '.join(f'{x:.3f}' for x in rel)})")
PY
