"""The paper's motivation in miniature (``make demo-cnn``, docs/cnn_vs_vit.md): dense features of a
CNN CLIP against those of a CLIP ViT on the synthetic world.

The paper's section "CLIP Image and Dense Representation" finds that the dense features of CNN
CLIP models recognise regions about as well as (or better than) their image crops and keep
locality in K-Means maps, while those of CLIP ViTs are poor and need crops. Here both toy CLIPs
(``ToyCLIP-ViT-P8``, stride 8, and ``ToyCLIP-RN``, a ModifiedResNet of the same parameter count,
stride 32) are pre-trained by the same recipe and budget (:func:`~.toy_clip.train_toy_clip`) and
evaluated by the same region-recognition protocol (paper Table 2; docs/region_evaluation.md)
through ``train_net.py --eval-only``, at several input sizes so that both the same input (128 px)
and the same dense grid (8 x 8, 16 x 16) are compared. Then K-Means maps of both towers' dense
features on the same validation images.

Stages: world (reused from ``make demo`` when it matches) -> toy CLIPs (each cached by its
settings; the demo's toy ViT is reused when its key matches, i.e. when it too was
pre-trained without region crops) -> region recognition -> K-Means
picture -> ``REPORT.md`` + ``metrics.json``.
"""
import json
import math
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import open_clip
import torch
from PIL import Image

from ..data.clip_transforms import resize_longest_pad
from ..modeling.backbone import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD, CLIPTower
from ..synthetic.writer import prepare_world
from ..utils.visualize import kmeans_map, side_by_side
from .miniature import SIZES as MINIATURE_SIZES
from .miniature import toy_clip_settings
from .runner import TrainNetJob, run_jobs
from .toy_clip import (
    TOY_CLIP_NAME,
    TOY_CLIP_RN_NAME,
    cached_toy_clip,
    pretraining_input_size,
    register_toy_clip_configs,
    toy_clip_cache_key,
)

__all__ = [
    "SIZES",
    "TOWERS",
    "EVAL_RUNS",
    "REGION_KEYS",
    "dense_grid",
    "find_world",
    "find_toy_clip",
    "region_eval_args",
    "comparison_rows",
    "kmeans_columns_panel",
    "write_report",
    "run_cnn_vs_vit",
]

#: full (``make demo-cnn``) and quick (the integration test) sizes: the miniature's world and toy
#: CLIP (``clipself.engine.miniature.SIZES``: ``make demo``'s world and toy ViT are reused when
#: present; both toy CLIPs without region crops, docs/cnn_vs_vit.md §1) and the K-Means images
SIZES = {mode: {**MINIATURE_SIZES[mode], "kmeans_images": n}
         for mode, n in (("full", 4), ("quick", 2))}
#: tower -> (label, open_clip model config, region-evaluation config, dense stride)
TOWERS = {
    "vit": ("toy ViT (ToyCLIP-ViT-P8)", TOY_CLIP_NAME, "configs/Synthetic/clipself_toy_patches.py",
            8),
    "rn": ("toy CNN (ToyCLIP-RN)", TOY_CLIP_RN_NAME, "configs/Synthetic/region_eval_toy_rn.py",
           32),
}
#: region-evaluation runs: name -> (tower, input side). Same input: vit_128 / rn_128; same dense
#: grid: vit_64 / rn_256 (8 x 8) and vit_128 / rn_512 (16 x 16).
EVAL_RUNS = {
    "vit_64": ("vit", 64), "vit_128": ("vit", 128),
    "rn_128": ("rn", 128), "rn_256": ("rn", 256), "rn_512": ("rn", 512),
}
#: the K-Means picture's columns after the input: (run name of EVAL_RUNS, title)
KMEANS_COLUMNS = (("vit_128", "ViT 128 px"), ("rn_128", "CNN 128 px"),
                  ("rn_512", "CNN 512 px"))
#: evaluator keys kept in metrics.json
REGION_KEYS = ("boxes_top1", "boxes_top5", "thing_masks_top1", "thing_masks_top5",
               "stuff_masks_top1", "stuff_masks_top5", "crops_top1", "crops_top5",
               "stuff_crops_top1")


def dense_grid(image_size: int, stride: int) -> int:
    """Side of the dense grid of a square ``image_size`` input at ``stride`` pixels per cell.

    Raises:
        ValueError: ``image_size`` is not a positive multiple of ``stride``.
    """
    if image_size <= 0 or stride <= 0 or image_size % stride:
        raise ValueError(f"input side {image_size} is not a positive multiple of the tower's "
                         f"stride {stride}")
    return image_size // stride


def _world_meta(root: str) -> Optional[dict]:
    path = os.path.join(root, "synthetic", "meta.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def find_world(roots: Sequence[str], *, seed: int, num_train: int, num_val: int
               ) -> Optional[str]:
    """The first datasets root whose synthetic world (``root/synthetic/meta.json``) was written
    with these settings, or None."""
    for root in roots:
        meta = _world_meta(root)
        if meta and (meta.get("seed"), meta.get("num_train"), meta.get("num_val")) == (
                seed, num_train, num_val):
            return root
    return None


def find_toy_clip(folders: Sequence[str], settings: Mapping[str, Any], model_name: str
                  ) -> Optional[str]:
    """The first folder holding a toy CLIP (``toy_clip.pt`` + ``toy_clip.json``) trained with
    these settings (same cache key as :func:`~.toy_clip.cached_toy_clip`), or None."""
    key = toy_clip_cache_key(settings, model_name)
    for folder in folders:
        info_path = os.path.join(folder, "toy_clip.json")
        if not (os.path.isfile(info_path) and os.path.isfile(os.path.join(folder, "toy_clip.pt"))):
            continue
        with open(info_path) as f:
            if json.load(f).get("key") == key:
                return folder
    return None


def region_eval_args(config: str, checkpoint: str, image_size: int, stride: int,
                     out_dir: str, text_cache: str, quick: bool = False) -> List[str]:
    """``train_net.py`` arguments of one region evaluation of a toy tower at ``image_size``
    (the mask grid follows: ``image_size / stride``)."""
    return [
        "--eval-only", "--config-file", config,
        f'model.student.pretrained="{checkpoint}"',
        f"dataloader.train.mapper.image_size={image_size}",
        f"dataloader.test.mapper.image_size={image_size}",
        f"dataloader.test.mapper.mask_size={dense_grid(image_size, stride)}",
        f'dataloader.evaluator.vocabulary.text_encoder.cache_dir="{text_cache}"',
        f"dataloader.test.num_workers={0 if quick else 1}",
        f'train.output_dir="{out_dir}"',
    ]


def _ratio(a: float, b: float) -> float:
    return 100.0 * a / b if b > 0 and math.isfinite(a) else float("nan")


def comparison_rows(region: Mapping[str, Mapping[str, float]]) -> List[Dict[str, Any]]:
    """Rows of the comparison table, one per evaluation run in ``EVAL_RUNS`` order.

    Args:
        region (dict): run name -> the run's region-recognition results (``REGION_KEYS``).
    Returns:
        list[dict]: ``run``, ``tower``, ``input``, ``grid``, the results, and
        ``boxes_vs_crops`` / ``thing_masks_vs_crops``: dense top-1 as % of the same tower's
        crop top-1 (crops do not depend on the input side).
    """
    rows = []
    for run, (tower, size) in EVAL_RUNS.items():
        if run not in region:
            continue
        r = region[run]
        rows.append({
            "run": run, "tower": tower, "input": size,
            "grid": dense_grid(size, TOWERS[tower][3]), **{k: r[k] for k in REGION_KEYS if k in r},
            "boxes_vs_crops": _ratio(r["boxes_top1"], r["crops_top1"]),
            "thing_masks_vs_crops": _ratio(r["thing_masks_top1"], r["crops_top1"]),
        })
    return rows


def _normalized_input(img: Image.Image, size: int) -> Tuple[torch.Tensor, torch.Tensor, float]:
    x, scale = resize_longest_pad(img, size)  # uint8 (3, size, size)
    mean = torch.tensor(CLIP_PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_PIXEL_STD).view(3, 1, 1)
    return x, (x.float() - mean) / std, scale


@torch.no_grad()
def kmeans_columns_panel(
    columns: Sequence[Tuple[str, str, Optional[str], int]],
    images: Sequence[str],
    *,
    k: int = 6,
    cell: int = 192,
) -> Image.Image:
    """K-Means maps of dense features (paper Figure 4 style), one column per (tower, input
    side), one row per image.

    Args:
        columns (list): (title, open_clip model config, checkpoint or None, input side) per
            column; the title gets the dense grid appended.
        images (list[str]): image files.
        k (int): clusters per map.
        cell (int): pixels per picture cell.
    Returns:
        PIL image: the input (at the largest side), then one map per column; the padding of the
        square input is excluded from clustering and drawn black.
    """
    pics = [Image.open(p).convert("RGB") for p in images]
    show = max(c[3] for c in columns)
    rows: List[List[Image.Image]] = [
        [Image.fromarray(_normalized_input(im, show)[0].permute(1, 2, 0).numpy())] for im in pics
    ]
    titles = ["input"]
    towers: Dict[Tuple[str, Optional[str]], Any] = {}
    for title, model_name, ckpt, size in columns:
        if (model_name, ckpt) not in towers:
            towers[(model_name, ckpt)] = CLIPTower(model_name, pretrained=ckpt).eval()
        tower = towers[(model_name, ckpt)]
        inputs = [_normalized_input(im, size) for im in pics]
        dense = tower.dense_features(torch.stack([x for _, x, _ in inputs]))  # (B, D, h, w)
        stride = size / dense.shape[-1]
        for i, (im, (_, _, scale)) in enumerate(zip(pics, inputs)):
            vh = max(1, round(im.height * scale / stride))
            vw = max(1, round(im.width * scale / stride))
            rows[i].append(kmeans_map(dense[i], k, valid_hw=(vh, vw), out_size=(cell, cell)))
        titles.append(f"{title} ({dense.shape[-2]}x{dense.shape[-1]})")
    return side_by_side(rows, titles, cell=cell)


def _fmt(v: float) -> str:
    return f"{v:.1f}" if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"


def write_report(out: str, m: Mapping[str, Any]) -> str:
    """``out/REPORT.md`` from the metrics of :func:`run_cnn_vs_vit`; returns its path."""
    rows = comparison_rows(m["region_recognition"])
    by_run = {r["run"]: r for r in rows}
    tc = m["toy_clip"]
    table = [
        "| tower | input | dense grid | Boxes top1 | top5 | Thing masks top1 | top5 | "
        "Stuff masks top1 | top5 | dense box / crop top-1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        table.append(
            f"| {TOWERS[r['tower']][0]} | {r['input']} px | {r['grid']} x {r['grid']} | "
            f"{_fmt(r['boxes_top1'])} | {_fmt(r['boxes_top5'])} | "
            f"{_fmt(r['thing_masks_top1'])} | {_fmt(r['thing_masks_top5'])} | "
            f"{_fmt(r['stuff_masks_top1'])} | {_fmt(r['stuff_masks_top5'])} | "
            f"{_fmt(r['boxes_vs_crops'])}% |")
    crops = []
    for tower in TOWERS:
        runs = [r for r in rows if r["tower"] == tower]
        if runs:
            r = runs[0]
            crops.append(f"| {TOWERS[tower][0]} | {_fmt(r['crops_top1'])} | "
                         f"{_fmt(r['crops_top5'])} | {_fmt(r.get('stuff_crops_top1', math.nan))} |")
    lines = [
        "# CNN vs ViT dense features on the synthetic world (`make demo-cnn`)",
        "",
        "Produced by `python tools/cnn_vs_vit.py"
        f"{' --quick' if m['quick'] else ''}` on the CPU; every figure was computed by this run "
        "(the toy CLIPs by this run or an earlier one with the same settings, see below).",
        "The question (the paper's section \"CLIP Image and Dense Representation\"): do dense "
        "features of a CNN CLIP recognise regions as well as its image crops, while those of a "
        "CLIP ViT fall far behind theirs?",
        "",
        f"- World: {m['world']['num_train']} training / {m['world']['num_val']} validation "
        f"scenes, seed {m['world']['seed']} ({m['world']['root']}).",
    ]
    for tower, (label, model_name, _, stride) in TOWERS.items():
        t = tc[tower]
        lines.append(
            f"- {label}: {t['visual_parameters'] / 1e6:.2f} M visual parameters, stride {stride}, "
            f"pre-trained at {t['input']} px for {t['settings']['steps']} steps (pool of "
            f"{t['settings']['pool_scenes']} scenes; same recipe for both) in "
            f"{t['seconds']:.0f} s, final loss {t['final_loss']:.3f}; zero-shot top-1 on "
            f"validation crops {t['zero_shot_top1']:.1f}%; checkpoint {t['checkpoint']}"
            f"{' (reused)' if t['reused'] else ''}.")
    lines += [
        "",
        "## Region recognition (paper Table 2 protocol; mean per-class accuracy, %)",
        "",
        "Validation panoptic split, 35 classes; things: RoI = box, crop = box x1.5; stuff: RoI = "
        "crop = mask box; dense features = the last block's value path (ViT) / the attention "
        "pool's value path (CNN, MaskCLIP); crops letterboxed to 64 px (the pre-training side) "
        "for both towers. The input side sets the dense grid (ViT: side / 8, CNN: side / 32).",
        "",
        *table,
        "",
        "Image crops (independent of the input side):",
        "",
        "| tower | Crops top1 | top5 | Stuff crops top1 |",
        "|---|---|---|---|",
        *crops,
        "",
    ]
    pairs = [("same input (128 px)", "vit_128", "rn_128"),
             ("same grid (8 x 8)", "vit_64", "rn_256"),
             ("same grid (16 x 16)", "vit_128", "rn_512")]
    summary = [f"- {name}: dense box top-1 ViT {_fmt(by_run[a]['boxes_top1'])} "
               f"({_fmt(by_run[a]['boxes_vs_crops'])}% of its crops) vs CNN "
               f"{_fmt(by_run[b]['boxes_top1'])} ({_fmt(by_run[b]['boxes_vs_crops'])}% of its "
               "crops)." for name, a, b in pairs if a in by_run and b in by_run]
    lines += [
        "Dense against crops, per comparison:",
        "",
        *summary,
        "",
        "## K-Means of dense features (paper Figure 4 style)",
        "",
        f"![kmeans]({os.path.basename(m['pictures']['kmeans'])})",
        "",
        "Same validation images, k = 6 per map; black = padding of the square input.",
        "",
        "## Wall time per stage (s)",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in m["seconds"].items()],
    ]
    path = os.path.join(out, "REPORT.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _visual_facts(model_name: str) -> Dict[str, int]:
    """Visual parameter count and pre-training input side of a (registered) model config."""
    visual = open_clip.create_model(model_name).visual
    return {"visual_parameters": sum(p.numel() for p in visual.parameters()),
            "input": pretraining_input_size(visual)}


def run_cnn_vs_vit(
    output: str,
    *,
    demo: Optional[str] = "output/demo",
    quick: bool = False,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> Dict[str, Any]:
    """Run the comparison and write ``output/REPORT.md``, ``metrics.json`` and
    ``kmeans_cnn_vs_vit.png``.

    Args:
        output (str): the output folder.
        demo (str or None): ``make demo``'s folder: its world and toy ViT are reused when their
            settings match.
        quick (bool): tiny sizes (the integration test).
        seed (int): world and pre-training seed.
        log (callable): progress lines.
    Returns:
        dict: the metrics written to ``metrics.json``.
    """
    out = os.path.abspath(output)
    os.makedirs(out, exist_ok=True)
    size = SIZES["quick" if quick else "full"]
    metrics: Dict[str, Any] = {"quick": quick, "sizes": size, "seconds": {}}
    t_all = time.time()
    demo = os.path.abspath(demo) if demo else None

    # world
    t0 = time.time()
    world = dict(seed=seed, num_train=size["num_train"], num_val=size["num_val"])
    candidates = ([os.path.join(demo, "datasets")] if demo else []) + [
        os.path.join(out, "datasets")]
    root = find_world(candidates, **world)
    if root is None:
        root = os.path.join(out, "datasets")
        prepare_world(root, log=log, **world)
    else:
        log(f"world: reusing {root}")
    metrics["world"] = {**world, "root": root}
    env = dict(os.environ, DETECTRON2_DATASETS=root)
    metrics["seconds"]["world"] = round(time.time() - t0, 2)

    # toy CLIPs: the same recipe and budget for both
    t0 = time.time()
    register_toy_clip_configs()
    settings = toy_clip_settings(size, seed)
    metrics["toy_clip"] = {}
    ckpts = {}
    for tower, (label, model_name, _, _) in TOWERS.items():
        own = os.path.join(out, f"toy_clip_{tower}")
        folders = ([os.path.join(demo, "toy_clip")] if demo and tower == "vit" else []) + [own]
        found = find_toy_clip(folders, settings, model_name)
        log(f"{label}: " + (f"cached in {found}" if found else f"training into {own}"))
        info = cached_toy_clip(found or own, settings, model_name=model_name, log=log)
        ckpts[tower] = info["checkpoint"]
        metrics["toy_clip"][tower] = {
            **{k: info[k] for k in ("checkpoint", "key", "settings", "zero_shot_top1",
                                    "final_loss", "seconds")},
            "model_name": model_name, "reused": found is not None, **_visual_facts(model_name),
        }
    metrics["seconds"]["toy_clips"] = round(time.time() - t0, 2)

    # region recognition through train_net.py --eval-only
    t0 = time.time()
    text_cache = os.path.join(out, "text_embeddings")
    jobs = []
    for run, (tower, side) in EVAL_RUNS.items():
        _, _, config, stride = TOWERS[tower]
        out_dir = os.path.join(out, "region", run)
        jobs.append(TrainNetJob(run, region_eval_args(config, ckpts[tower], side, stride, out_dir,
                                                      text_cache, quick), output_dir=out_dir))
    # one job first: it fills the text-embedding cache of its tower; then two at a time
    done = run_jobs(jobs[:1], env=env, threads=None if quick else 2, log=log)
    done.update(run_jobs(jobs[1:], env=env, threads=1, log=log))
    metrics["region_recognition"] = {
        run: {k: done[run].results["region_recognition"].get(k, float("nan"))
              for k in REGION_KEYS} for run in EVAL_RUNS}
    metrics["seconds"]["region"] = round(time.time() - t0, 2)

    # K-Means picture
    t0 = time.time()
    val_dir = os.path.join(root, "synthetic", "val")
    images = [os.path.join(val_dir, n) for n in sorted(os.listdir(val_dir))[:size["kmeans_images"]]]
    columns = []
    for run, title in KMEANS_COLUMNS:
        tower, side = EVAL_RUNS[run]
        columns.append((title, TOWERS[tower][1], ckpts[tower], side))
    panel = kmeans_columns_panel(columns, images, k=6, cell=192)
    path = os.path.join(out, "kmeans_cnn_vs_vit.png")
    panel.save(path)
    metrics["pictures"] = {"kmeans": path, "images": images}
    metrics["seconds"]["pictures"] = round(time.time() - t0, 2)

    metrics["seconds"]["total"] = round(time.time() - t_all, 2)
    metrics["comparison"] = comparison_rows(metrics["region_recognition"])
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    log(f"report: {write_report(out, metrics)}")
    return metrics
