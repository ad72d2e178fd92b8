#!/usr/bin/env python3
"""kill -9 at random moments of a training run with --save-every, resume each time, and check
that the run that finally finishes equals the one that was never interrupted.

    scripts/kill_loop.py [--kills 50] [--polyak build/release/polyak] [--seed 1]

Each round starts the run (fresh while its directory holds no checkpoint yet, --resume after),
waits a random time and sends SIGKILL: in the middle of a step, an evaluation or a checkpoint
save. After the last kill the run resumes to its end. The script then compares every tensor of
model.safetensors and checkpoint.safetensors, and metrics.csv without its wall-clock columns,
with an uninterrupted run of the same options, and checks that no temporary file of a killed
save is left. It prints one line per kill and a summary; the exit status is 0 only when
everything matched.
"""
import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time

TRAIN = ["--model", "momentum", "--steps", "30000", "--batch", "8", "--length", "32",
         "--layers", "2", "--heads", "2", "--d-model", "32", "--ff", "64", "--dropout", "0.1",
         "--eval-every", "1000", "--eval-batches", "2", "--threads", "1", "--quiet"]
SAVE_EVERY = "20"


def safetensors(path):
    """(metadata, {name: bytes}) of a safetensors file."""
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {name: (h["dtype"], tuple(h["shape"]),
                      data[h["data_offsets"][0]:h["data_offsets"][1]])
               for name, h in header.items()}
    return meta, tensors


def without_clock(name, tensor):
    """A tensor's bytes; the checkpoint's metrics rows (f64 [steps, 8]) without the two
    wall-clock columns."""
    dtype, shape, data = tensor
    if name != "train.rows":
        return tensor
    return [row[:4] + row[6:] for row in
            (struct.unpack_from("<8d", data, 64 * i) for i in range(shape[0]))]


def metrics_without_clock(path):
    with open(path) as f:
        return [",".join(c for i, c in enumerate(line.rstrip("\n").split(",")) if i not in (4, 5))
                for line in f]


def checkpoint_step(run):
    path = os.path.join(run, "checkpoint.safetensors")
    if not os.path.exists(path):
        return None
    return int(safetensors(path)[0]["train.step"])


def leftovers(run):
    return [n for n in os.listdir(run) if ".tmp." in n] if os.path.isdir(run) else []


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--polyak", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "build", "release", "polyak"))
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill times")
    parser.add_argument("--min-wait", type=float, default=0.05)
    parser.add_argument("--max-wait", type=float, default=1.5)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="polyak-kill-loop-")
    ref, run = os.path.join(work, "uninterrupted"), os.path.join(work, "killed")

    started = time.time()
    subprocess.run([args.polyak, "train", *TRAIN, "--out", ref], check=True,
                   stdout=subprocess.DEVNULL)
    print(f"uninterrupted run: {time.time() - started:.1f} s", flush=True)

    kills = finished_early = stale_seen = 0
    redone = 0  # steps done again after a kill: those past the last checkpoint
    started = time.time()
    while kills < args.kills:
        before = checkpoint_step(run)
        stale_seen += len(leftovers(run))
        if before is None:
            cmd = [args.polyak, "train", *TRAIN, "--save-every", SAVE_EVERY, "--out", run]
            if os.path.isdir(run):
                cmd.append("--force")  # killed before its first checkpoint: start again
        else:
            cmd = [args.polyak, "train", "--resume", run, "--quiet"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait = rng.uniform(args.min_wait, args.max_wait)
        time.sleep(wait)
        if proc.poll() is not None:
            err = proc.stderr.read().decode()
            if proc.returncode != 0:
                print(f"FAIL: {' '.join(cmd)} exited {proc.returncode}: {err}")
                return 1
            finished_early += 1
            print(f"the run finished before kill {kills + 1}: starting it again", flush=True)
            shutil.rmtree(run)
            continue
        proc.kill()
        proc.wait()
        kills += 1
        after = checkpoint_step(run)
        print(f"kill {kills:2d} after {wait:.2f} s: checkpoint at step {before} → {after}, "
              f"temporaries left {len(leftovers(run))}", flush=True)

    final = subprocess.run([args.polyak, "train", "--resume", run, "--quiet"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if final.returncode != 0:
        print(f"FAIL: the last resume exited {final.returncode}: {final.stderr.decode()}")
        return 1
    print(f"killed run: {kills} kills in {time.time() - started:.1f} s, then resumed to the end",
          flush=True)

    problems = []
    for name in ("model.safetensors", "checkpoint.safetensors"):
        a = safetensors(os.path.join(ref, name))[1]
        b = safetensors(os.path.join(run, name))[1]
        if a.keys() != b.keys():
            problems.append(f"{name}: tensor names differ")
        problems += [f"{name}: tensor {t} differs" for t in a
                     if t in b and without_clock(t, a[t]) != without_clock(t, b[t])]
    if metrics_without_clock(os.path.join(ref, "metrics.csv")) != \
            metrics_without_clock(os.path.join(run, "metrics.csv")):
        problems.append("metrics.csv differs (wall-clock columns aside)")
    left = leftovers(run)
    if left:
        problems.append(f"temporary files left: {left}")

    print(f"kill -9 loop: {kills} kills, {finished_early} runs that finished before their kill, "
          f"{stale_seen} temporaries of killed saves found at restarts (removed there); "
          f"final tensors and metrics {'identical' if not problems else 'DIFFERENT'} "
          f"to the uninterrupted run")
    for p in problems:
        print("FAIL:", p)
    if not problems:
        shutil.rmtree(work)
    else:
        print("runs kept in", work)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
