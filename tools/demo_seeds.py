#!/usr/bin/env python
"""The miniature paper on several world seeds: mean and spread of every figure, the targets of
every seed (``make demo-seeds``; docs/miniature.md §5).

A seed that ``make demo`` already ran (``--demo``, the same sizes) is taken from its
``metrics.json``, and so is a seed whose own run below finished at the same sizes (an interrupted
``make demo-seeds`` resumes at the first unfinished seed; delete ``OUTPUT/seed_N`` to re-run it).
For every other seed, runs ``tools/miniature_paper.py --seed N --skip
mixed,alpha,pictures`` into ``OUTPUT/seed_N`` (its world and toy CLIP are cached there, so a
second run only re-runs the distillation and detection stages). Then writes
``OUTPUT/metrics.json``, ``OUTPUT/REPORT.md`` (figures per seed, mean +- sample std, min - max;
targets per seed) and ``OUTPUT/seeds.png``.

Usage::

    python tools/demo_seeds.py --output output/demo_seeds [--seeds 0,1,2] [--quick]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from typing import Mapping

from matplotlib.figure import Figure

from clipself.engine.miniature import SIZES, with_region_crops
from clipself.engine.seed_spread import summarize, summary_tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _log(msg: str) -> None:
    print(f"[demo-seeds {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_seed(out: str, seed: int, quick: bool, extra: list) -> dict:
    """The miniature paper's region-recognition and F-ViT stages on world ``seed``; its
    metrics.json. Its output is relayed line by line."""
    cmd = [sys.executable, os.path.join(ROOT, "tools", "miniature_paper.py"), "--output", out,
           "--seed", str(seed), "--skip", "mixed,alpha,pictures", *extra,
           *(["--quick"] if quick else [])]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    for line in proc.stdout:
        print(f"  [seed {seed}] {line}", end="", flush=True)
    if proc.wait() != 0:
        raise RuntimeError(f"the miniature paper failed on seed {seed} (exit {proc.returncode}); "
                           f"its output is above, its files in {out}")
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)


def reusable_run(folder: str, seed: int, quick: bool, sizes: Mapping) -> dict:
    """The metrics in ``folder`` (an output folder of the miniature paper) when it holds a
    finished run of world ``seed`` at these ``sizes`` with every stage demo-seeds needs, else
    None."""
    path = os.path.join(folder, "metrics.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        m = json.load(f)
    same = (m.get("world", {}).get("seed") == seed and m.get("quick") == quick
            and m.get("sizes") == dict(sizes))
    return m if same and "detection" in m and "after_patches" in m.get(
        "region_recognition", {}) else None


STAGES = ("before", "clipself", "proposals", "fvit")  # the stages demo-seeds needs


def stage_seconds(metrics: Mapping) -> float:
    """Seconds the run that computed ``metrics`` spent in the stages demo-seeds needs (world and
    toy CLIP excluded: they are cached per seed)."""
    return sum(metrics.get("seconds", {}).get(k, 0.0) for k in STAGES)


def draw(summary: Mapping, path: str) -> str:
    """Two panels: the region targets per seed (dense box top-1 as a share of the crops', stuff)
    and F-ViT novel AP50 per seed and tower; target lines dashed."""
    fig = Figure(figsize=(10, 3.8), dpi=120)  # no pyplot: no display backend
    ax1, ax2 = fig.subplots(1, 2)
    seeds = summary["seeds"]
    t = summary["targets"]
    for k, (key, colour) in enumerate((("patches_of_crops", "tab:blue"),
                                       ("proposals_of_crops", "tab:orange"))):
        values = [100 * t[key]["values"][s] for s in seeds]
        xs = [i + (k - 0.5) * 0.25 for i in range(len(seeds))]
        bars = ax1.bar(xs, values, width=0.25, color=colour, label=t[key]["description"])
        ax1.bar_label(bars, fmt="%.0f", fontsize=7)
        ax1.axhline(100 * t[key]["threshold"], color=colour, linestyle="--", linewidth=1)
    ax1.set_xticks(range(len(seeds)), [f"seed {s}" for s in seeds])
    ax1.set_ylim(0, 110)  # room for the legend above the bars and the target lines
    ax1.set_ylabel("dense box top-1, % of the crops' top-1")
    ax1.set_title("region recognition (dashed: targets)")
    ax1.legend(fontsize=7, loc="upper right")
    f = summary["figures"]
    for k, (key, colour, label) in enumerate((
            ("fvit_novel_original", "tab:gray", "toy CLIP"),
            ("fvit_novel_clipself", "tab:green", "CLIPSelf tower"))):
        xs = [i + (k - 0.5) * 0.3 for i in range(len(seeds))]
        bars = ax2.bar(xs, [f[key]["values"][s] for s in seeds], width=0.3, color=colour,
                       label=label)
        ax2.bar_label(bars, fmt="%.1f", fontsize=7)
    ax2.set_xticks(range(len(seeds)), [f"seed {s}" for s in seeds])
    ax2.set_ylabel("AP50 novel (%)")
    ax2.set_title("F-ViT, novel classes")
    ax2.legend(fontsize=7)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_report(out: str, summary: Mapping, quick: bool, seconds: Mapping,
                 sources: Mapping, stage_times: Mapping) -> str:
    lines = [
        "# The miniature paper on several world seeds",
        "",
        f"Produced by `make demo-seeds` (`python tools/demo_seeds.py"
        f"{' --quick' if quick else ''}`); each seed's own report is `seed_N/REPORT.md`. Every "
        "figure was computed by this run; std is the sample standard deviation over the seeds.",
        "",
        *summary_tables(summary),
        "",
        "![per seed](seeds.png)",
        "",
        "Per-seed reports: " + ", ".join(f"seed {s}: `{p}`" for s, p in sources.items()) + ".",
        "",
        "Wall time of this run per seed (s; a reused finished run takes none): "
        + ", ".join(f"seed {s} {v:.0f}" for s, v in seconds.items()) + ".",
        "",
        "Stage time of the run that computed each seed (s; " + ", ".join(STAGES)
        + "; world and toy CLIP excluded): "
        + ", ".join(f"seed {s} {v:.0f}" for s, v in stage_times.items()) + ".",
    ]
    path = os.path.join(out, "REPORT.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="output/demo_seeds")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated world seeds")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (integration test)")
    parser.add_argument("--fvit-precision", choices=["auto", "bf16", "fp32"], default="auto")
    parser.add_argument("--region-crops", type=int, default=0, metavar="N",
                        help="toy CLIPs pre-trained also on N captioned region crops per scene "
                             "(tools/miniature_paper.py --region-crops)")
    parser.add_argument("--demo", default="output/demo",
                        help="make demo's output: its seed's figures are reused when it ran at "
                             "the same sizes (its toy CLIP settings included)")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if len(set(seeds)) != len(seeds) or not seeds or min(seeds) < 0:
        parser.error(f"--seeds must be distinct non-negative integers, got {args.seeds!r}")

    out = os.path.abspath(args.output)
    os.makedirs(out, exist_ok=True)
    sizes = with_region_crops(SIZES["quick" if args.quick else "full"], args.region_crops)
    per_seed, seconds, sources = {}, {}, {}
    t_all = time.time()
    for i, seed in enumerate(seeds):
        t0 = time.time()
        _log(f"seed {seed} ({i + 1}/{len(seeds)})")
        seed_out = os.path.join(out, f"seed_{seed}")
        for folder, what in ((args.demo, "make demo's run of this world"),
                             (seed_out, "a finished run of this seed")):
            reused = reusable_run(folder, seed, args.quick, sizes)
            if reused is not None:
                _log(f"seed {seed}: reusing {folder}/metrics.json ({what})")
                per_seed[seed] = reused
                sources[seed] = os.path.join(folder, "REPORT.md")
                break
        else:
            per_seed[seed] = run_seed(seed_out, seed, args.quick,
                                      ["--fvit-precision", args.fvit_precision,
                                       "--region-crops", str(args.region_crops)])
            sources[seed] = os.path.join(seed_out, "REPORT.md")
        seconds[seed] = time.time() - t0
        mean = (time.time() - t_all) / (i + 1)
        _log(f"seed {seed} done in {seconds[seed]:.0f} s; ETA {mean * (len(seeds) - i - 1):.0f} s")
    summary = summarize(per_seed)
    draw(summary, os.path.join(out, "seeds.png"))
    result = {"quick": args.quick, "seeds": seeds, "summary": summary, "reports": sources,
              "seconds": {str(s): round(v, 1) for s, v in seconds.items()}}
    with open(os.path.join(out, "metrics.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    stage_times = {s: stage_seconds(m) for s, m in per_seed.items()}
    report = write_report(out, summary, args.quick, seconds, sources, stage_times)
    for line in summary_tables(summary):
        print(line)
    _log(f"report: {report}")
    return result


if __name__ == "__main__":
    main()
