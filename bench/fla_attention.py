#!/usr/bin/env python3
"""fla's chunked causal linear attention, forward + backward, against N on a GPU.

The reference for `bench_long_sequence --device cuda`: the same problem and the same row
layout, so that bench/device.sh can take ratios row by row.

  y = chunk_linear_attn(φ(q), φ(k), v, scale 1, normalized)   (flash-linear-attention)
  φ(x) = elu(x) + 1 (timed, as in bench_long_sequence), then y.backward(dy)
  q, k [B,N,H,D], v, dy [B,N,H,Dv], f32, B = 1, H = 8, D = Dv = 32

polyak's causal_linear_attention computes the same function (y_i = φq_i·S_i / φq_i·z_i, with
S_i = Σ_{j≤i} φk_jᵀ v_j and z_i = Σ_{j≤i} φk_j). Where fla has no chunk_linear_attn, its
chunk_simple_gla without gates (unnormalized) stands in, named fla-sgla in the rows.

Per N: the median and minimum time over --reps repetitions after one warm-up (which also runs
Triton's autotuning), torch.cuda.synchronize() around the timed region, and the peak of
PyTorch's CUDA allocator (inputs included, as polyak's allocator peak includes them). TF32 is
off for PyTorch's own matmuls; fla's Triton kernels choose their own dot precision (Triton's
default for f32 inputs is TF32), which can only favour fla.

Prints "skipped: <why>" and exits 0 when torch or fla cannot be imported; exits 1 naming the
device when no CUDA device is present.

Usage: bench/fla_attention.py [--sizes 4096,16384,65536] [--reps 5] [--device cuda[:N]]
"""
import argparse
import inspect
import statistics
import sys
import time

B, H, D, DV = 1, 8, 32, 32


def skip(why):
    print(f"skipped: fla_attention.py: {why}")
    sys.exit(0)


def sizes(text):
    try:
        values = [int(item) for item in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"'{text}', expected comma-separated integers ≥ 1")
    return values


def attention_fn():
    """(name, f(fq, fk, v) → y) for the layout [B,N,H,D], from whichever API this fla has."""
    try:
        from fla.ops.linear_attn import chunk_linear_attn as fn
        name, kwargs = "fla-chunk", {"scale": 1.0, "normalize": True}
    except ImportError:
        from fla.ops.simple_gla import chunk_simple_gla as fn
        name, kwargs = "fla-sgla", {"scale": 1.0}
    # Early versions took [B,H,N,D] by default (head_first=True); later ones take [B,N,H,D]
    # and dropped the flag.
    if "head_first" in inspect.signature(fn).parameters:
        kwargs["head_first"] = False
    return name, lambda q, k, v: fn(q, k, v, **kwargs)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=sizes, default=[4096, 16384, 65536], help="the sequence lengths N")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per N, after one warm-up")
    ap.add_argument("--device", default="cuda", help="cuda | cuda:N")
    args = ap.parse_args()
    if args.reps < 1:
        ap.error(f"--reps: '{args.reps}', expected an integer ≥ 1")

    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        skip(f"torch is not importable ({e})")
    device = torch.device(args.device)
    if device.type != "cuda":
        ap.error(f"--device: '{args.device}', expected cuda or cuda:N (fla's kernels are Triton's)")
    if not torch.cuda.is_available():
        sys.exit(f"fla_attention.py: --device {args.device} was asked for, but no CUDA device is present "
                 f"(torch {torch.__version__}: torch.cuda.is_available() is False)")
    try:
        import fla
        name, attend = attention_fn()
    except Exception as e:  # fla missing, or its Triton missing or too old
        skip(f"fla is not importable ({type(e).__name__}: {e})")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    print(f"fla {getattr(fla, '__version__', '?')} {name}: causal linear attention forward + backward, f32, "
          f"B={B} H={H} D={D} Dv={DV}, on {device} ({torch.cuda.get_device_name(device)}), "
          f"q, k through elu + 1 (timed)")
    print(f"median of {args.reps} repetitions after one warm-up; peak of PyTorch's CUDA allocator")
    print(f"{'kind':<9} {'N':>8} {'median ms':>12} {'min ms':>12} {'device peak MiB':>16} {'per-pos states MiB':>20}")
    sys.stdout.flush()
    gen = torch.Generator().manual_seed(1)
    for n in args.sizes:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        # Drawn on the host, then moved, as bench_long_sequence does.
        q, k = (torch.randn(B, n, H, D, generator=gen).to(device).requires_grad_() for _ in range(2))
        v = torch.randn(B, n, H, DV, generator=gen).to(device).requires_grad_()
        dy = torch.randn(B, n, H, DV, generator=gen).to(device)
        ms, y = [], None
        try:
            for rep in range(args.reps + 1):  # rep 0 warms up (and autotunes)
                q.grad = k.grad = v.grad = None
                torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                y = attend(F.elu(q) + 1, F.elu(k) + 1, v)
                y.backward(dy)
                torch.cuda.synchronize(device)
                if rep > 0:
                    ms.append(1000 * (time.perf_counter() - t0))
        except Exception as e:  # an fla that rejects f32 or this shape: say so, go on
            print(f"skipped: fla_attention.py: {name} at N={n} failed ({type(e).__name__}: {e})")
            continue
        finally:
            del q, k, v, dy, y
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
        states_mib = B * H * n * D * DV * 4 / 2**20
        print(f"{name:<9} {n:>8} {statistics.median(ms):>12.2f} {min(ms):>12.2f} {peak_mib:>16.1f} {states_mib:>20.1f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
