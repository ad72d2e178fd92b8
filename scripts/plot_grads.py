#!/usr/bin/env python3
"""Draws the gradient norms that `polyak inspect-grads` recorded as one PNG.

    python3 scripts/plot_grads.py RUN.csv [RUN.csv ...] [--out PNG] [--title TEXT]

Each CSV (columns step,layer,q,k,v,out,loss) is one run, labelled with the file's name.
Five panels on a log scale: the L2 norms of the gradients reaching q, k, v and the
attention output against the step, a line per run and layer (one colour per run, layers
from light to dark and with their own dash), and the training loss per run. TransNormer's
claim (docs/math.md §5) reads off the q, k panels: linear attention's lines sit higher and jump
more than NormAttention's.

Exit status: 0 drawn; 2 bad input (missing files, no rows); 3 matplotlib is not installed.
"""
import argparse
import csv
import math
import os
import sys

QUANTITIES = ("q", "k", "v", "out")
DASHES = ("-", "--", "-.", ":")


def read_run(path):
    """{layer: ([steps], {quantity: [values]})} and the loss per step."""
    layers, loss = {}, {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"step", "layer", "loss", *QUANTITIES} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path} has no column {', '.join(sorted(missing))}, expected "
                             "step,layer,q,k,v,out,loss")
        for row in reader:
            step, layer = int(row["step"]), int(row["layer"])
            steps, values = layers.setdefault(layer, ([], {q: [] for q in QUANTITIES}))
            steps.append(step)
            for q in QUANTITIES:
                values[q].append(float(row[q]))
            loss[step] = float(row["loss"])
    return layers, sorted(loss.items())


def shade(color, layer, layers):
    """The run's colour mixed with white: the first layer lightest, the last the colour."""
    mix = 0.0 if layers == 1 else 0.55 * (1 - layer / (layers - 1))
    return tuple(c + (1 - c) * mix for c in color[:3])


def positive(xs, ys):
    """The points a log scale can show."""
    kept = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y) and y > 0]
    return [x for x, _ in kept], [y for _, y in kept]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", nargs="+")
    parser.add_argument("--out", help="the PNG (default: grads.png beside the first CSV)")
    parser.add_argument("--title", default="")
    args = parser.parse_args()

    runs = []
    for path in args.csv:
        if not os.path.isfile(path):
            print(f"plot_grads: {path} not found", file=sys.stderr)
            return 2
        try:
            layers, loss = read_run(path)
        except (ValueError, KeyError) as e:
            print(f"plot_grads: {e}", file=sys.stderr)
            return 2
        if layers:
            runs.append((os.path.splitext(os.path.basename(path))[0], layers, loss))
    if not runs:
        print("plot_grads: no CSV has any row", file=sys.stderr)
        return 2

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_grads: matplotlib is not installed (Debian: apt-get install "
              "python3-matplotlib, or scripts/setup.sh)", file=sys.stderr)
        return 3

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    panels = dict(zip(QUANTITIES, axes.flat))
    loss_ax, legend_ax = axes.flat[4], axes.flat[5]
    colors = plt.get_cmap("tab10").colors
    handles = []
    for i, (name, layers, loss) in enumerate(runs):
        color = colors[i % len(colors)]
        for layer, (steps, values) in sorted(layers.items()):
            style = dict(color=shade(color, layer, len(layers)),
                         linestyle=DASHES[layer % len(DASHES)], linewidth=1.1)
            for q in QUANTITIES:
                line, = panels[q].plot(*positive(steps, values[q]), **style)
            line.set_label(f"{name}, layer {layer}")
            handles.append(line)
        loss_ax.plot(*positive([s for s, _ in loss], [v for _, v in loss]), color=color,
                     linewidth=1.2)

    for q, ax in panels.items():
        ax.set_title(f"‖∂loss/∂{q}‖" if q != "out" else "‖∂loss/∂ attention output‖")
    loss_ax.set_title("training loss")
    for ax in (*panels.values(), loss_ax):
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.grid(True, alpha=0.3, which="both")
    legend_ax.axis("off")
    legend_ax.legend(handles=handles, loc="center", frameon=False,
                     ncol=1 if len(handles) <= 12 else 2, fontsize="small")
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()

    out = args.out or os.path.join(os.path.dirname(args.csv[0]), "grads.png")
    tmp = out + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, out)
    print(f"plot_grads: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
