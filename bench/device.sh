#!/usr/bin/env bash
# Every device figure in one run, for a machine with an NVIDIA GPU (about 6 to 8 minutes on an
# H100 or H200):
#   bench/device.sh [--device cuda|cuda:N] [--out DIR] [--budget SECONDS] [--steps N]
#                   [--reps N] [--sizes N,N,...]
#   bench/device.sh --summary DIR   # the summary of an earlier run's logs, again
#
#   1. the CUDA suites, test_cuda and test_cuda_kernels (what `ctest -R cuda` runs, each suite
#      in one process: a carried build tree's CTest files name the machine it was built on)
#   2. the paper-preset copy step: `polyak bench --device`, eager and with --graph (the step
#      captured once and replayed), against bench/torch_copy.py eager (TF32 off), for softmax,
#      linear and momentum
#   3. long sequences: bench_long_sequence --device up to N = 1,048,576, and
#      bench/fla_attention.py (fla's chunked linear attention) at 4096, 16384, 65536
#   4. the same step against torch.compile (last: compiling takes the longest)
#   5. a summary with the ratios and their goals
#
# Builds nothing when build/release has the four programs (a tree built where nvcc is, carried
# along); otherwise builds them with `cmake --preset release` (CUDA is on when nvcc is found).
# PyTorch is the first python3 on the PATH (or $PYTHON). A missing piece (PyTorch, a PyTorch
# with CUDA, torch.compile, fla) prints "skipped: <why>" and the run goes on; no CUDA device
# stops it at once. A step that would pass the time budget (default 480 s from the start) is
# skipped, and each step has its own time limit. Logs and JSON go to DIR (default $OUT when
# set, else build/device-bench).
#
# To skip the build on the GPU machine, bring these from a build made with nvcc (about 31 MB):
# build/release/polyak, build/release/bench/bench_long_sequence,
# build/release/tests/cuda/test_cuda, build/release/tests/cuda/test_cuda_kernels.
set -uo pipefail
cd "$(dirname "$0")/.."
device=cuda out=${OUT:-build/device-bench} budget=480 steps=10 reps=2
sizes=4096,16384,65536,262144,1048576 fla_sizes=4096,16384,65536
kinds=(softmax linear momentum) summary_only=0
while (($#)); do
  case $1 in
    --device) device=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --summary) out=$2 summary_only=1; shift 2 ;;
    *) echo "device.sh: unknown argument '$1', expected --device, --out, --budget, --steps, --reps, --sizes or --summary" >&2; exit 2 ;;
  esac
done

# The figures of the logs in $out: the step times, the long-sequence rows, the ratios.
summarize() {
python3 - "$out" "${kinds[@]}" <<'PY'
import json, os, re, sys
out, kinds = sys.argv[1], sys.argv[2:]

def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)["ms_per_step"]
    except (OSError, ValueError, KeyError):
        return None

def rows(log):
    """{(kind, N): median ms} from the table rows of a bench_long_sequence or fla_attention log."""
    found = {}
    try:
        with open(os.path.join(out, log)) as f:
            for line in f:
                m = re.match(r"(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", line)
                if m:
                    found[(m[1], int(m[2]))] = float(m[3])
    except OSError:
        pass
    return found

fmt = lambda x: "-" if x is None else f"{x:.2f}"
print(f"{'paper step, ms':<15} {'polyak':>10} {'polyak graph':>13} {'torch eager':>12} "
      f"{'torch compile':>14}")
for k in kinds:
    print(f"{k:<15} {fmt(load(f'polyak-{k}.json')):>10} {fmt(load(f'polyak-graph-{k}.json')):>13} "
          f"{fmt(load(f'torch-{k}.json')):>12} {fmt(load(f'torch-compile-{k}.json')):>14}")
for k in kinds:
    eager, graphed = load(f"polyak-{k}.json"), load(f"polyak-graph-{k}.json")
    if eager and graphed:
        print(f"paper step: polyak graph/eager = {graphed / eager:.3f}, {k} (< 1: the graph pays)")
    # The better of polyak's two steps against PyTorch.
    ours = min((x for x in (eager, graphed) if x), default=None)
    for who, goal in (("eager", " (goal < 1)"), ("compile", "")):
        theirs = load(f"torch-{'compile-' if who == 'compile' else ''}{k}.json")
        if ours and theirs:
            print(f"paper step: polyak/torch-{who} = {ours / theirs:.3f}{goal}, {k}: "
                  f"{ours:.2f} ms / {theirs:.2f} ms")
        else:
            print(f"paper step: polyak/torch-{who}: no figure for {k} (see the logs above)")

ours, fla = rows("long_sequence.log"), rows("fla.log")
fla_kind = next((k for k, _ in fla), None)
ns = sorted({n for _, n in ours} | {n for _, n in fla})
print(f"{'N':>8} {'linear ms':>10} {'momentum ms':>12} {(fla_kind or 'fla') + ' ms':>13} "
      f"{'momentum/linear':>16} {'momentum/fla':>13}")
ratio = lambda a, b: f"{a / b:.3f}" if a and b else "-"
for n in ns:
    lin, mom, ref = ours.get(("linear", n)), ours.get(("momentum", n)), fla.get((fla_kind, n))
    print(f"{n:>8} {fmt(lin):>10} {fmt(mom):>12} {fmt(ref):>13} {ratio(mom, lin):>16} {ratio(mom, ref):>13}")
for n in ns:
    lin, mom, ref = ours.get(("linear", n)), ours.get(("momentum", n)), fla.get((fla_kind, n))
    if mom and ref:
        print(f"momentum fwd+bwd / fla chunk = {mom / ref:.3f} at N={n} (goal ≤ 1.5)")
    if lin and ref:
        print(f"linear fwd+bwd / fla chunk = {lin / ref:.3f} at N={n}")
if not any(ours.get(("momentum", n)) and fla.get((fla_kind, n)) for n in ns):
    print("momentum fwd+bwd / fla chunk: no figure (fla skipped or failed; see the logs above)")
try:
    with open(os.path.join(out, "long_sequence.log")) as f:
        for line in f:
            if line.startswith("memory "):
                print(line.rstrip())
except OSError:
    pass
PY
}
if ((summary_only)); then
  summarize
  exit
fi
mkdir -p "$out"
py=${PYTHON:-python3}
bin=build/release
polyak=$bin/polyak long_sequence=$bin/bench/bench_long_sequence
tests=($bin/tests/cuda/test_cuda $bin/tests/cuda/test_cuda_kernels)
declare -A status  # step → passed | FAILED (...) | skipped (...)

# step NAME LIMIT COMMAND...: runs COMMAND under `timeout LIMIT` (less when the budget is
# nearly spent), its output shown and kept in $out/NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((budget - SECONDS))
  if ((left < 20)); then
    echo "skipped: $name: the time budget ($budget s) is spent"
    status[$name]="skipped (time budget)"
    return 1
  fi
  ((limit > left)) && limit=$left
  echo "=== $name (limit ${limit} s, ${SECONDS} s elapsed)"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  local skipped
  skipped=$(grep -m1 '^skipped: ' "$out/$name.log")
  if ((rc == 0)) && [[ -n $skipped ]]; then
    status[$name]="skipped (${skipped#skipped: })"
  elif ((rc == 0)); then
    status[$name]=passed
  elif ((rc == 124)); then
    status[$name]="FAILED (timed out after $limit s)"
  else
    status[$name]="FAILED (exit status $rc)"
  fi
  return "$rc"
}

# ---- build, if the programs were not carried along ------------------------------------------
if [[ ! -x $polyak || ! -x $long_sequence || ! -x ${tests[0]} || ! -x ${tests[1]} ]]; then
  echo "=== build: $bin lacks the programs; cmake --preset release (CUDA when nvcc is found)"
  cmake --preset release >"$out/configure.log" 2>&1 &&
    cmake --build --preset release -j "$(nproc)" \
      --target polyak_cli bench_long_sequence test_cuda test_cuda_kernels >"$out/build.log" 2>&1 || {
    echo "device.sh: the build failed; see $out/configure.log and $out/build.log" >&2
    tail -n 20 "$out/build.log" >&2
    exit 1
  }
fi

# ---- the device: polyak's own check (a build with CUDA, a GPU the driver finds) ---------------
if ! probe=$("$long_sequence" --device "$device" --kind linear --n 64 --reps 1 2>&1); then
  echo "device.sh: no CUDA device for polyak: $probe" >&2
  exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null |
  sed 's/^/gpu: /'

# ---- PyTorch: present, with CUDA, with torch.compile? -----------------------------------------
torch_why=$("$py" - "$py" 2>&1 <<'PY'
import sys
try:
    import torch
except ImportError as e:
    sys.exit(f"{sys.argv[1]} cannot import torch ({e})")
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} finds no CUDA device")
print(f"torch {torch.__version__}" + ("" if hasattr(torch, "compile") else " (no torch.compile)"))
PY
) && has_torch=1 || has_torch=0
echo "pytorch: $torch_why"

# ---- 1. the CUDA suites -------------------------------------------------------------------------
for t in "${tests[@]}"; do
  step "$(basename "$t")" 240 "$t"
done

# ---- 2. the paper step, polyak against PyTorch eager --------------------------------------------
for k in "${kinds[@]}"; do
  step "polyak-$k" 120 "$polyak" bench --preset paper --model "$k" --device "$device" \
    --steps "$steps" --json "$out/polyak-$k.json"
  step "polyak-graph-$k" 120 "$polyak" bench --preset paper --model "$k" --device "$device" \
    --steps "$steps" --graph --json "$out/polyak-graph-$k.json"
  if ((has_torch)); then
    step "torch-$k" 120 "$py" bench/torch_copy.py --model "$k" --device "$device" \
      --steps "$steps" --json-out "$out/torch-$k.json"
  else
    echo "skipped: torch-$k: $torch_why"
    status[torch-$k]="skipped ($torch_why)"
  fi
done

# ---- 3. long sequences -----------------------------------------------------------------------------
step long_sequence 240 "$long_sequence" --device "$device" --sizes "$sizes" --reps "$reps"
if ((has_torch)); then
  step fla 120 "$py" bench/fla_attention.py --device "$device" --sizes "$fla_sizes" --reps "$reps"
else
  echo "skipped: fla: $torch_why"
  status[fla]="skipped ($torch_why)"
fi

# ---- 4. the paper step against torch.compile --------------------------------------------------------
for k in "${kinds[@]}"; do
  if ((has_torch)); then
    step "torch-compile-$k" 150 "$py" bench/torch_copy.py --model "$k" --device "$device" \
      --steps "$steps" --compile --json-out "$out/torch-compile-$k.json"
  else
    status[torch-compile-$k]="skipped ($torch_why)"
  fi
done

# ---- 5. summary ----------------------------------------------------------------------------------------
echo "=== summary ($device, ${SECONDS} s)"
for name in "${!status[@]}"; do echo "$name: ${status[$name]}"; done | sort
summarize
echo "logs: $out"
# Exit status 1 when a step failed (a skipped one is not a failure).
for name in "${!status[@]}"; do [[ ${status[$name]} != FAILED* ]] || exit 1; done
