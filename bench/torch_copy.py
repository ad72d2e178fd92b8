#!/usr/bin/env python3
"""The paper-preset copy-task model in PyTorch, timed step by step like `polyak bench`.

Same architecture as polyak's TransformerLM (post-LN layers, fused QKV projection, elu+1
causal linear, causal momentum or causal softmax attention, residual, momentum or adaptive
connection, ReLU feed-forward, sinusoidal positions, final LayerNorm, vocabulary head),
same batch, same RAdam with per-parameter gradient clipping. The linear kinds are written
in the form that is fastest in PyTorch at this length (N = 128): the masked quadratic
product (φQ φKᵀ ⊙ W) V, with W the causal mask for linear attention and the momentum
weights W_ij = γ (1 − β^{i−j+1}) / (1 − β) (docs/math.md §3, eq. 13) for momentum attention,
which computes the same function as the O(N) recurrences.

Model kinds (as `polyak --model`): softmax, linear, momentum, momentum-connection,
adaptive, with the paper's copy-task values β = 0.1, γ = 0.6, β̃ = γ̃ = 0.99, δ = 1e-3.

Run with OPENBLAS_CORETYPE=Cooperlake on this machine (Debian's OpenBLAS misdetects the
CPU and runs several times slower without it; bench/compare_pytorch.sh sets it).

--device cuda (or cuda:N) puts the model, the batch and the optimizer on that GPU (the batch is
drawn on the host and moved before the clock starts, as `polyak bench --device` does), waits
for the GPU (torch.cuda.synchronize) before reading the clock, and turns TF32 off so that both
sides multiply in full f32. --compile times torch.compile(model) instead of eager PyTorch; a
PyTorch without torch.compile (before 2.0) prints "skipped: ..." and measures nothing.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


BETA, GAMMA = 0.1, 0.6  # momentum attention (Table 1, copy task)
CONN_BETA, CONN_GAMMA, DELTA, EPS = 0.99, 0.99, 1e-3, 1e-6  # connections (docs/math.md §4)


def momentum_weights(n, device):
    """W_ij = γ (1 − β^{i−j+1}) / (1 − β) for j ≤ i, else 0."""
    i = torch.arange(n, device=device).unsqueeze(1)
    j = torch.arange(n, device=device).unsqueeze(0)
    w = GAMMA * (1 - BETA ** (i - j + 1).clamp(min=0).double()) / (1 - BETA)
    return (w * (j <= i)).float()


class Attention(nn.Module):
    def __init__(self, d, heads, kind, dropout):
        super().__init__()
        self.heads, self.kind = heads, kind
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        mask = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        if self.kind == "linear":
            q, k = F.elu(q) + 1, F.elu(k) + 1
            a = (q @ k.transpose(-1, -2)) * mask
            y = (a @ v) / (a.sum(-1, keepdim=True) + 1e-6)
        elif self.kind == "momentum":
            q, k = F.elu(q) + 1, F.elu(k) + 1
            a = q @ k.transpose(-1, -2)
            y = ((a * momentum_weights(n, x.device)) @ v) / ((a * mask).sum(-1, keepdim=True) + 1e-6)
        else:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
            y = s.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        return self.drop(self.out(y.transpose(1, 2).reshape(b, n, d)))


def connect(connection, x, a, carry):
    """docs/math.md §4: residual, or v = β̃ v − a; x − γ̃ v (β̃ per token when adaptive)."""
    if connection == "residual":
        return x + a
    v_prev, a_prev = carry.get("v"), carry.get("a")
    if v_prev is None:
        v = -a
    elif connection == "momentum":
        v = CONN_BETA * v_prev - a
    else:
        ratio = (a - a_prev).norm(dim=-1, keepdim=True) / (v_prev.norm(dim=-1, keepdim=True) + EPS)
        beta = ((1 - (ratio + EPS).sqrt()) ** 2).clamp(0, 1 - DELTA)
        v = beta * v_prev - a
    carry["v"], carry["a"] = v, a
    return x - CONN_GAMMA * v


class Layer(nn.Module):
    def __init__(self, d, heads, ff, kind, dropout):
        super().__init__()
        attention = {"momentum-connection": "momentum", "adaptive": "momentum"}.get(kind, kind)
        self.connection = {"momentum-connection": "momentum", "adaptive": "adaptive"}.get(kind, "residual")
        self.attn = Attention(d, heads, attention, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff, d),
                                nn.Dropout(dropout))

    def forward(self, x, carry):
        x = self.norm1(connect(self.connection, x, self.attn(x), carry))
        return self.norm2(x + self.ff(x))


class CopyModel(nn.Module):
    def __init__(self, vocab, length, d, heads, ff, layers, kind, dropout):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        pos = torch.arange(length).unsqueeze(1)
        div = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
        pe = torch.zeros(length, d)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        self.register_buffer("pe", pe)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(Layer(d, heads, ff, kind, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, tokens):
        x = self.drop(self.embed(tokens) + self.pe[: tokens.shape[1]])
        carry = {}
        for layer in self.layers:
            x = layer(x, carry)
        return self.head(self.norm(x))


def copy_batch(batch, length, gen):
    """w 0 w padded with 0; loss on the copied word (docs/math.md §10)."""
    lo, hi = length // 4, (length - 1) // 2
    n = torch.randint(lo, hi, (batch,), generator=gen)
    seq = torch.zeros(batch, length, dtype=torch.long)
    mask = torch.zeros(batch, length)
    for i in range(batch):
        w = torch.randint(1, 11, (int(n[i]),), generator=gen)
        seq[i, : n[i]] = w
        seq[i, n[i] + 1 : 2 * n[i] + 1] = w
        mask[i, n[i] : 2 * n[i]] = 1
    targets = torch.cat([seq[:, 1:], torch.zeros(batch, 1, dtype=torch.long)], 1)
    return seq, targets, mask


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="linear", choices=["softmax", "linear", "momentum", "momentum-connection", "adaptive"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--polyak-json", help="polyak bench --json output, for the ratio")
    ap.add_argument("--json-out", help="write {model, ms_per_step} here")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--compile", action="store_true", help="time torch.compile(model)")
    args = ap.parse_args()
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    if on_gpu:
        if not torch.cuda.is_available():
            sys.exit(f"torch_copy.py: --device {args.device} was asked for, but no CUDA device is present "
                     f"(torch {torch.__version__}: torch.cuda.is_available() is False)")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif device.type != "cpu":
        sys.exit(f"torch_copy.py: --device is '{args.device}', expected cpu, cuda or cuda:N")
    if args.compile and not hasattr(torch, "compile"):
        print(f"skipped: --compile: torch {torch.__version__} has no torch.compile (PyTorch 2.0 or later)")
        return
    if not on_gpu and os.environ.get("OPENBLAS_CORETYPE") is None:
        print("warning: OPENBLAS_CORETYPE is not set; PyTorch's BLAS may run slow here", file=sys.stderr)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CopyModel(11, args.length, 256, 8, 1024, 4, args.model, args.dropout).to(device)
    opt = torch.optim.RAdam(model.parameters(), lr=1e-3, weight_decay=0.01)
    step_model = torch.compile(model) if args.compile else model
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    times = []
    for step in range(args.warmup + args.steps):
        tokens, targets, mask = (t.to(device) for t in copy_batch(args.batch, args.length, gen))
        sync()
        t0 = time.perf_counter()
        logits = step_model(tokens)
        nll = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1), reduction="none")
        loss = (nll * mask.reshape(-1)).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        for p in model.parameters():
            torch.nn.utils.clip_grad_norm_(p, 1.0)
        opt.step()
        sync()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    ms = 1000 * statistics.median(times)
    with open("/proc/self/maps") as f:
        blas = sorted({line.split()[-1] for line in f if "blas" in line.lower() and "/" in line})
    tokens_per_s = args.batch * args.length / (ms / 1000)
    mode = " compiled" if args.compile else ""
    where = (f"{device} ({torch.cuda.get_device_name(device)}, TF32 off)" if on_gpu
             else f"threads {args.threads}")
    print(f"pytorch {torch.__version__} {args.model}{mode}: median {ms:.1f} ms/step over {args.steps} steps, "
          f"{tokens_per_s:.0f} tokens/s, {where}, loss {loss.item():.3f}, BLAS {', '.join(blas)}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"model": args.model, "ms_per_step": ms, "device": str(device), "compiled": args.compile}, f)
    if args.polyak_json:
        with open(args.polyak_json) as f:
            ours = json.load(f)
        ratio = ours["ms_per_step"] / ms
        print(f"ratio polyak/pytorch: {ratio:.3f} ({ours['ms_per_step']:.1f} ms / {ms:.1f} ms)")


if __name__ == "__main__":
    main()
