#!/usr/bin/env python3
"""Draws the curves of a `polyak compare` or `polyak ablate` folder as one PNG.

    python3 scripts/plot_runs.py FOLDER [--out PNG] [--title TEXT]

FOLDER holds summary.csv (one row per run: run folder, legend label, ...) and, per run,
FOLDER/<run>/metrics.csv as `polyak train` writes it. Four panels, one line per run, as in
the paper's Figure 1: training loss against iteration and against training seconds (test
evaluations excluded), test word accuracy against iteration and against training seconds.
The training loss is a running mean over a window of about 2% of the steps. Each run has
its own colour, dash and marker, so that the nine causal kinds of `polyak compare` stay
apart (and readable in grey).

Exit status: 0 drawn; 2 bad input (missing files, no runs); 3 matplotlib is not installed.
"""
import argparse
import csv
import math
import os
import sys

DASHES = ("-", "--", "-.", (0, (1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<")


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def number(text):
    return float(text) if text not in ("", None) else math.nan


def running_mean(values, window):
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def mathtext(label):
    """β and β̃ in matplotlib's math text, which places the tilde over the β."""
    return label.replace("β\u0303", r"$\tilde{\beta}$").replace("β", r"$\beta$")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--out", help="the PNG (default: FOLDER/runs.png)")
    parser.add_argument("--title", default="")
    args = parser.parse_args()

    summary_path = os.path.join(args.folder, "summary.csv")
    if not os.path.isfile(summary_path):
        print(f"plot_runs: {summary_path} not found, expected a polyak compare/ablate folder",
              file=sys.stderr)
        return 2
    runs = []
    for row in read_rows(summary_path):
        metrics_path = os.path.join(args.folder, row["run"], "metrics.csv")
        if not os.path.isfile(metrics_path):
            print(f"plot_runs: {metrics_path} not found; run {row['run']} left out",
                  file=sys.stderr)
            continue
        metrics = read_rows(metrics_path)
        if metrics:
            runs.append((mathtext(row["label"]), metrics))
    if not runs:
        print(f"plot_runs: no run in {summary_path} has metrics", file=sys.stderr)
        return 2

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_runs: matplotlib is not installed (Debian: apt-get install "
              "python3-matplotlib, or scripts/setup.sh)", file=sys.stderr)
        return 3

    # The evaluation's column is the seventh of metrics.csv: test_accuracy (copy),
    # val_accuracy (the classification tasks), test_bits_per_dim, test_bits_per_byte.
    columns = list(runs[0][1][0].keys())
    test_column = columns[6] if len(columns) > 6 else "test_accuracy"
    percent = "accuracy" in test_column
    test_label = test_column.replace("_", " ").replace("bits per dim", "bits/dim").replace(
        "bits per byte", "bits/byte") + (" (%)" if percent else "")

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    (loss_step, loss_time), (acc_step, acc_time) = axes
    colors = plt.get_cmap("tab10").colors
    for i, (label, metrics) in enumerate(runs):
        style = dict(color=colors[i % len(colors)], linestyle=DASHES[i % len(DASHES)],
                     marker=MARKERS[i % len(MARKERS)], markersize=3, linewidth=1.2)
        step = [number(r["step"]) for r in metrics]
        seconds = [number(r.get("train_seconds") or r["seconds"]) for r in metrics]
        loss = running_mean([number(r["loss"]) for r in metrics], max(1, len(metrics) // 50))
        evals = [r for r in metrics if r.get(test_column, "") != ""]
        loss_step.plot(step, loss, label=label, **style, markevery=max(1, len(step) // 8))
        loss_time.plot(seconds, loss, **style, markevery=max(1, len(step) // 8))
        eval_step = [number(r["step"]) for r in evals]
        eval_seconds = [number(r.get("train_seconds") or r["seconds"]) for r in evals]
        eval_acc = [(100 if percent else 1) * number(r[test_column]) for r in evals]
        acc_step.plot(eval_step, eval_acc, **style)
        acc_time.plot(eval_seconds, eval_acc, **style)

    for ax in (loss_step, loss_time):
        ax.set_yscale("log")
        ax.set_ylabel("train loss")
    for ax in (acc_step, acc_time):
        ax.set_ylabel(test_label)
        if percent:
            ax.set_ylim(0, 101)
    for ax in (loss_step, acc_step):
        ax.set_xlabel("iteration")
    for ax in (loss_time, acc_time):
        ax.set_xlabel("training time (s)")
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    # One legend for the four panels, under them, where it hides no curve.
    handles, labels = loss_step.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), frameon=False)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout(rect=(0, 0.05, 1, 1))

    out = args.out or os.path.join(args.folder, "runs.png")
    tmp = out + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, out)
    print(f"plot_runs: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
