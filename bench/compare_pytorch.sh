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
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq python3-torch >/dev/null
fi
[[ -x build/release/polyak ]] || scripts/setup.sh
# Debian's OpenBLAS misdetects this CPU family and runs several times slower without this.
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Cooperlake}
json=$(mktemp)
trap 'rm -f "$json"' EXIT
for ((r = 1; r <= rounds; r++)); do
  echo "--- round $r/$rounds"
  build/release/polyak bench --model "$model" --threads "$threads" --steps "$steps" --json "$json"
  /usr/bin/python3 bench/torch_copy.py --model "$model" --threads "$threads" --steps "$steps" \
    --polyak-json "$json"
done
