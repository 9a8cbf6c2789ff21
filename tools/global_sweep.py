#!/usr/bin/env python
"""Dense against global ability on the synthetic world: a sweep of the image-level term's weight
next to the alpha ensembles (docs/distillation.md §10).

Runs :func:`clipself.engine.global_sweep.run_global_sweep` (CLIPSelf patches distillation of the
toy CLIP at ``model.global_loss_weight`` 0 / 0.1 / 0.5 / 1, and the weight-0 run at alpha
0 / 0.5 / 0.7), then draws ``OUTPUT/global_sweep.png``: dense box top-1 against image-level
zero-shot mAP, one point per setting. Also writes ``OUTPUT/metrics.json`` and ``OUTPUT/TABLE.md``.
The world and the toy CLIP of ``--demo`` (``make demo``'s output) are reused when their settings
match.

Usage::

    python tools/global_sweep.py --output output/global_sweep [--demo output/demo] [--quick]
"""
import argparse
import math
import os
import time
from typing import Mapping, Sequence

from matplotlib.figure import Figure

from clipself.engine.global_sweep import run_global_sweep

#: marker and colour of each kind of setting
STYLE = {"weight": ("o", "tab:blue", "image-level term weight"),
         "alpha": ("s", "tab:orange", "alpha ensemble of weight 0")}


def _log(msg: str) -> None:
    print(f"[global-sweep {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def draw(rows: Sequence[Mapping], path: str, *, x: str = "image_mAP", y: str = "boxes_top1"
         ) -> str:
    """Scatter ``y`` (dense) against ``x`` (global), one labelled point per row of
    :func:`~clipself.engine.global_sweep.sweep_rows`; each kind joined in order of its value,
    the alpha curve ending at the weight-0 run (its alpha 1). Rows with a NaN are left out."""
    fig = Figure(figsize=(5.5, 4.2), dpi=120)  # no pyplot: no display backend, no global state
    ax = fig.subplots()
    finite = [r for r in rows if math.isfinite(r[x]) and math.isfinite(r[y])]
    for kind, (marker, colour, name) in STYLE.items():
        pts = sorted((r["value"], r[x], r[y], r["label"]) for r in finite if r["kind"] == kind)
        if not pts:
            continue
        curve = list(pts)
        if kind == "alpha":  # alpha 1 is the weight-0 run itself
            curve += [(1.0, r[x], r[y], "") for r in finite
                      if r["kind"] == "weight" and r["value"] == 0]
        ax.plot([p[1] for p in curve], [p[2] for p in curve], color=colour, linestyle=":")
        ax.plot([p[1] for p in pts], [p[2] for p in pts], marker=marker, color=colour,
                linestyle="none", label=name)
        for _, px, py, label in pts:
            ax.annotate(label, (px, py), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"global: {x} (%)")
    ax.set_ylabel(f"dense: {y} (%)")
    ax.set_title("CLIPSelf on the synthetic world: dense vs global")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="output/global_sweep")
    parser.add_argument("--demo", default="output/demo",
                        help="make demo's output folder (world and toy CLIP reused if they match)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a few iterations)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=2, help="train_net.py jobs at once")
    args = parser.parse_args(argv)
    metrics = run_global_sweep(args.output, demo=args.demo, quick=args.quick, seed=args.seed,
                               parallel=args.parallel, log=_log)
    # crop top-1 (the model's own encode_image of object crops) is the global metric that moves
    # on the synthetic world; image mAP of whole scenes is the second picture
    pictures = (("crops_top1", "global_sweep.png"), ("image_mAP", "global_sweep_image_map.png"))
    for x, name in pictures:
        _log(f"picture: {draw(metrics['rows'], os.path.join(args.output, name), x=x)}")
    return metrics


if __name__ == "__main__":
    main()
