"""The miniature paper over several world seeds: per-seed figures, their mean and spread, and the
targets each seed must meet (``make demo-seeds``; docs/miniature.md §5).

Everything here reads the ``metrics.json`` that ``tools/miniature_paper.py`` writes; nothing is
computed from a model.
"""
import math
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np


def _get(metrics: Mapping[str, Any], path: str) -> float:
    node: Any = metrics
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return float("nan")
        node = node[key]
    return float(node)


#: the per-seed figures of the table: (key, label, path into metrics.json)
SEED_FIGURES: Tuple[Tuple[str, str, str], ...] = (
    ("toy_clip_top1", "toy CLIP zero-shot top-1, val object crops", "toy_clip.zero_shot_top1"),
    ("crops_top1", "image crops top-1 (region eval)", "region_recognition.before.crops_top1"),
    ("teacher_tight", "toy CLIP top-1, tight object boxes (a dense box's RoI)",
     "teacher_regions.tight_boxes.top1"),
    ("teacher_grid_things", "toy CLIP top-1, grid cells a thing dominates",
     "teacher_regions.grid_things.top1"),
    ("boxes_before", "dense boxes top-1, toy CLIP", "region_recognition.before.boxes_top1"),
    ("boxes_patches", "dense boxes top-1, + CLIPSelf patches",
     "region_recognition.after_patches.boxes_top1"),
    ("boxes_proposals", "dense boxes top-1, + CLIPSelf proposals",
     "region_recognition.after.boxes_top1"),
    ("stuff_before", "stuff masks top-1, toy CLIP", "region_recognition.before.stuff_masks_top1"),
    ("stuff_patches", "stuff masks top-1, + CLIPSelf patches",
     "region_recognition.after_patches.stuff_masks_top1"),
    ("student_crops_patches", "image crops top-1, patches student",
     "region_recognition.after_patches.crops_top1"),
    ("student_crops_proposals", "image crops top-1, proposals student",
     "region_recognition.after.crops_top1"),
    ("fvit_novel_original", "F-ViT AP50 novel, toy CLIP", "detection.original.ap50_novel"),
    ("fvit_novel_clipself", "F-ViT AP50 novel, CLIPSelf tower", "detection.clipself.ap50_novel"),
    ("fvit_base_original", "F-ViT AP50 base, toy CLIP", "detection.original.ap50_base"),
    ("fvit_base_clipself", "F-ViT AP50 base, CLIPSelf tower", "detection.clipself.ap50_base"),
)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


#: targets every seed must meet: (key, description, value from a metrics.json, threshold); a
#: value meets its target when it is >= the threshold
TARGETS: Tuple[Tuple[str, str, Callable[[Mapping], float], float], ...] = (
    ("toy_clip_top1", "toy CLIP zero-shot crop top-1 (%)",
     lambda m: _get(m, "toy_clip.zero_shot_top1"), 67.0),
    ("patches_of_crops", "patches dense box top-1 / crop top-1",
     lambda m: _ratio(_get(m, "region_recognition.after_patches.boxes_top1"),
                      _get(m, "region_recognition.before.crops_top1")), 0.60),
    ("proposals_of_crops", "proposals dense box top-1 / crop top-1",
     lambda m: _ratio(_get(m, "region_recognition.after.boxes_top1"),
                      _get(m, "region_recognition.before.crops_top1")), 0.75),
    ("stuff_patches", "stuff masks top-1 after patches (%)",
     lambda m: _get(m, "region_recognition.after_patches.stuff_masks_top1"), 90.0),
    ("fvit_novel_gain", "F-ViT AP50 novel, CLIPSelf / original tower",
     lambda m: _ratio(_get(m, "detection.clipself.ap50_novel"),
                      _get(m, "detection.original.ap50_novel")), 3.0),
)


def spread(values: Sequence[float]) -> Dict[str, float]:
    """Mean, sample standard deviation (ddof 1; 0 for one value), min and max of the finite
    ``values``; all NaN when none is finite.

    >>> spread([1.0, 2.0, 3.0])["std"]
    1.0
    """
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"),
                "max": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def summarize(per_seed: Mapping[int, Mapping[str, Any]]) -> Dict[str, Any]:
    """Per-seed figures, their spread, and the targets of every seed.

    Args:
        per_seed (dict): world seed -> the ``metrics.json`` of its miniature run.
    Returns:
        dict: ``seeds`` (sorted list), ``figures`` {key: {label, values {seed: v}, spread}},
        ``targets`` {key: {description, threshold, values {seed: v}, met {seed: bool},
        all_met, spread}}.
    """
    seeds = sorted(per_seed)
    figures = {}
    for key, label, path in SEED_FIGURES:
        values = {s: _get(per_seed[s], path) for s in seeds}
        figures[key] = {"label": label, "values": values, "spread": spread(list(values.values()))}
    targets = {}
    for key, description, fn, threshold in TARGETS:
        values = {s: float(fn(per_seed[s])) for s in seeds}
        met = {s: bool(math.isfinite(v) and v >= threshold) for s, v in values.items()}
        targets[key] = {"description": description, "threshold": threshold, "values": values,
                        "met": met, "all_met": all(met.values()),
                        "spread": spread(list(values.values()))}
    return {"seeds": seeds, "figures": figures, "targets": targets}


def _fmt(v: float, digits: int = 1) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.{digits}f}"


def summary_tables(summary: Mapping[str, Any]) -> List[str]:
    """Markdown lines: the figures table (one column per seed, mean +- std, min-max) and the
    targets table (value per seed, met or not)."""
    seeds = summary["seeds"]
    head = "| figure | " + " | ".join(f"seed {s}" for s in seeds) + " | mean +- std | min - max |"
    sep = "|---" * (len(seeds) + 3) + "|"
    lines = [head, sep]
    for f in summary["figures"].values():
        sp = f["spread"]
        lines.append(f"| {f['label']} | " + " | ".join(_fmt(f["values"][s]) for s in seeds)
                     + f" | {_fmt(sp['mean'])} +- {_fmt(sp['std'])} | {_fmt(sp['min'])} - "
                     f"{_fmt(sp['max'])} |")
    lines += ["", "| target | threshold | " + " | ".join(f"seed {s}" for s in seeds)
              + " | every seed |", "|---" * (len(seeds) + 3) + "|"]
    for t in summary["targets"].values():
        cells = [f"{_fmt(t['values'][s], 2)} {'yes' if t['met'][s] else 'NO'}" for s in seeds]
        lines.append(f"| {t['description']} | >= {t['threshold']:g} | " + " | ".join(cells)
                     + f" | {'yes' if t['all_met'] else 'NO'} |")
    return lines
