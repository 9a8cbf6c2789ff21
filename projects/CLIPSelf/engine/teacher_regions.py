"""How well the teacher (a toy CLIP) recognises the regions each distillation mode asks it about
(docs/miniature.md §3).

CLIPSelf's student can at best learn what the teacher's crop embeddings say. So before blaming
the distillation, measure the teacher zero-shot on the validation scenes of the world, region
kind by region kind, with the crops cut exactly as the distillation mapper cuts them
(``crop_letterboxed``, letterboxed to the tower's pre-training side):

* ``object_crops``: every object box enlarged 1.5x, 30 thing classes: the number the toy CLIP's
  training reports (``train_toy_clip``'s ``zero_shot_top1``), for reference;
* ``proposals``: the same boxes as the proposals mode cuts them (x1.5, clipped to the image),
  against the whole vocabulary of the region evaluation (30 things + 5 stuff);
* ``tight_boxes``: the object boxes themselves (x1, the RoI the region evaluation pools from the
  student's dense map, docs/region_evaluation.md §2), 35 classes: what the teacher says about
  exactly the region a dense box feature stands for;
* ``grid``: the cells of the patches mode (``sample_grid_boxes``: one random M x N grid, at most
  20 cells, per draw; ``grids_per_scene`` draws per scene), each labelled by its dominant class
  by area (things and stuff, :func:`clipself.data.regions.dominant_class`); reported overall,
  for thing- and stuff-labelled cells, and by purity (the dominant class's share of the cell:
  < 0.5, 0.5-0.8, > 0.8).

Accuracies are top-1 means over the classes present (the evaluator's convention); ``top1_visible``
(grid cells) is the share of cells whose prediction is *some* class covering at least
``VISIBLE_SHARE`` of the cell, a lenient reading of a mixed cell.
"""
import math
from typing import Dict, List, Optional, Sequence

import numpy as np
import open_clip
import torch
from PIL import Image
from torchvision.ops import clip_boxes_to_image

from ..data.clip_transforms import crop_letterboxed
from ..data.regions import dominant_class, region_class_areas, sample_grid_boxes, scale_boxes
from ..evaluation.region_recognition import mean_class_accuracy
from ..synthetic.world import ALL_CLASSES, THING_CLASSES, generate_scene, semantic_map
from .toy_clip import (
    TOY_CLIP_NAME,
    class_text_embeddings,
    encode_crops,
    object_crops,
    pretraining_input_size,
    register_toy_clip_configs,
)

__all__ = [
    "PURITY_BINS",
    "VISIBLE_SHARE",
    "teacher_regions",
    "teacher_region_accuracy",
    "analyze_teacher_regions",
    "format_teacher_regions",
]

#: purity buckets of grid cells: (name, low, high) on the dominant class's area share
PURITY_BINS = (("purity<0.5", 0.0, 0.5), ("purity0.5-0.8", 0.5, 0.8), ("purity>0.8", 0.8, 1.01))
#: a class "visible" in a cell covers at least this share of it (``top1_visible``)
VISIBLE_SHARE = 0.2
#: crop enlargement of the proposals mode (configs/Synthetic/clipself_toy_proposals.py)
PROPOSAL_SCALE = 1.5


def teacher_regions(
    seed: int,
    num_scenes: int,
    crop_size: int,
    *,
    grids_per_scene: int = 4,
    max_split: int = 6,
    max_boxes: int = 20,
    split: str = "val",
) -> Dict[str, Dict[str, torch.Tensor]]:
    """The regions of every kind on the first ``num_scenes`` scenes of ``split``.

    Returns:
        dict kind -> dict with ``crops`` uint8 (R, 3, C, C) and ``labels`` (R,) long (indices
        into ``ALL_CLASSES``; things first, so a thing's index is also its ``THING_CLASSES``
        index); ``grid`` also has ``purity`` (R,) float (the dominant class's share of the cell)
        and ``areas`` (R, K) long (pixels of each class in the cell).
    """
    k = len(ALL_CLASSES)
    gen = torch.Generator().manual_seed(seed)
    rows = {"object_crops": [], "proposals": [], "tight_boxes": [], "grid": []}
    for i in range(num_scenes):
        scene = generate_scene(seed, split, i)
        pil = Image.fromarray(scene["image"])
        h, w = scene["height"], scene["width"]
        thing_labels = torch.tensor([THING_CLASSES.index(t["name"]) for t in scene["things"]],
                                    dtype=torch.long)
        xywh = [t["bbox"] for t in scene["things"]]
        rows["object_crops"].append((object_crops(pil, xywh, crop_size), thing_labels))
        boxes = torch.tensor(xywh, dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xyxy
        crop_boxes = clip_boxes_to_image(scale_boxes(boxes, PROPOSAL_SCALE), (h, w))
        rows["proposals"].append((crop_letterboxed(pil, crop_boxes, crop_size), thing_labels))
        rows["tight_boxes"].append((crop_letterboxed(pil, boxes, crop_size), thing_labels))
        label_map = torch.from_numpy(semantic_map(scene).astype(np.int64))  # (H, W), 255 = none
        for _ in range(grids_per_scene):
            cells = sample_grid_boxes(w, h, max_split=max_split, max_boxes=max_boxes,
                                      generator=gen)
            labels, purity = dominant_class(label_map, cells, k)  # (R,), (R,)
            rows["grid"].append((crop_letterboxed(pil, cells, crop_size), labels, purity,
                                 region_class_areas(label_map, cells, k)))
    out = {}
    for kind in ("object_crops", "proposals", "tight_boxes"):
        out[kind] = {"crops": torch.cat([c for c, _ in rows[kind]]),
                     "labels": torch.cat([lab for _, lab in rows[kind]])}
    crops, labels, purity, areas = (torch.cat(parts) for parts in zip(*rows["grid"]))
    out["grid"] = {"crops": crops, "labels": labels, "purity": purity, "areas": areas}
    return out


@torch.no_grad()
def _predict(model, crops: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """(R, 5) top-5 class indices of letterboxed uint8 crops against (K, D) text embeddings."""
    if len(crops) == 0:
        return torch.zeros(0, 5, dtype=torch.long)
    return (encode_crops(model, crops) @ text.T).topk(5, dim=1).indices


def _acc(top: torch.Tensor, labels: torch.Tensor, num_classes: int) -> Dict[str, float]:
    hit = (top[:, 0] == labels).double()
    return {"top1": mean_class_accuracy(top, labels, 1, num_classes),
            "top5": mean_class_accuracy(top, labels, 5, num_classes),
            "top1_regions": float(hit.mean() * 100) if len(hit) else math.nan,
            "regions": int(labels.numel())}


@torch.no_grad()
def teacher_region_accuracy(
    model, tokenizer, regions: Dict[str, Dict[str, torch.Tensor]]
) -> Dict[str, Dict[str, float]]:
    """Zero-shot accuracy of ``model`` (an open_clip CLIP) on :func:`teacher_regions`' output,
    with the prompt "a photo of a {}." (the toy configs' evaluation prompt).

    Returns:
        dict of rows, each ``top1``, ``top5`` (mean per class, %), ``top1_regions`` (% of
        regions, not per class) and ``regions``: ``object_crops`` (30 thing classes),
        ``proposals``, ``tight_boxes`` and ``grid`` (35 classes), ``grid_things`` / ``grid_stuff``
        (cells whose dominant class is a thing / stuff), one row per :data:`PURITY_BINS` name
        (``grid_purity<0.5`` ...); the ``grid`` row also has ``top1_visible`` (% of cells).
    """
    model.eval()
    n_all, n_things = len(ALL_CLASSES), len(THING_CLASSES)
    text = class_text_embeddings(model, tokenizer, ALL_CLASSES)  # (35, D), things first
    res = {}
    top = _predict(model, regions["object_crops"]["crops"], text[:n_things])
    res["object_crops"] = _acc(top, regions["object_crops"]["labels"], n_things)
    top = _predict(model, regions["proposals"]["crops"], text)
    res["proposals"] = _acc(top, regions["proposals"]["labels"], n_all)
    top = _predict(model, regions["tight_boxes"]["crops"], text)
    res["tight_boxes"] = _acc(top, regions["tight_boxes"]["labels"], n_all)
    grid = regions["grid"]
    top = _predict(model, grid["crops"], text)
    labels = grid["labels"]
    res["grid"] = _acc(top, labels, n_all)
    areas = grid["areas"].double()  # (R, K)
    share = areas.gather(1, top[:, :1]).squeeze(1) / areas.sum(1).clamp(min=1)  # (R,)
    visible = share >= VISIBLE_SHARE
    res["grid"]["top1_visible"] = float(visible.double().mean() * 100) if len(labels) else math.nan
    is_thing = labels < n_things
    res["grid_things"] = _acc(top[is_thing], labels[is_thing], n_all)
    res["grid_stuff"] = _acc(top[~is_thing], labels[~is_thing], n_all)
    for name, lo, hi in PURITY_BINS:
        sel = (grid["purity"] >= lo) & (grid["purity"] < hi)
        res[f"grid_{name}"] = _acc(top[sel], labels[sel], n_all)
        res[f"grid_{name}"]["thing_share"] = (
            float(is_thing[sel].double().mean() * 100) if sel.any() else math.nan)
    return res


def analyze_teacher_regions(
    checkpoint: str,
    *,
    model_name: str = TOY_CLIP_NAME,
    seed: int = 0,
    num_scenes: int = 100,
    grids_per_scene: int = 4,
    log=print,
) -> Dict[str, object]:
    """Load an open_clip checkpoint of the project's ``model_name`` and measure it on the world's
    validation regions (:func:`teacher_regions`, :func:`teacher_region_accuracy`).

    Args:
        checkpoint (str): open_clip state dict (e.g. ``output/demo/toy_clip/toy_clip.pt``).
        seed (int): world seed (the scenes of ``generate_scene(seed, "val", i)``; the same
            scenes ``make demo`` writes for that seed) and the grid sampler's seed.
        num_scenes (int): validation scenes.
    Returns:
        dict: ``settings`` and ``accuracy`` (:func:`teacher_region_accuracy`).
    """
    register_toy_clip_configs()
    model = open_clip.create_model(model_name, pretrained=checkpoint)
    tokenizer = open_clip.get_tokenizer(model_name)
    size = pretraining_input_size(model.visual)
    regions = teacher_regions(seed, num_scenes, size, grids_per_scene=grids_per_scene)
    log("teacher regions: " + ", ".join(f"{k} {len(v['labels'])}" for k, v in regions.items()))
    return {
        "settings": {"checkpoint": checkpoint, "model_name": model_name, "seed": seed,
                     "num_scenes": num_scenes, "grids_per_scene": grids_per_scene,
                     "crop_size": size},
        "accuracy": teacher_region_accuracy(model, tokenizer, regions),
    }


_ROW_TEXT = {
    "object_crops": "object crops (box x1.5, 30 thing classes)",
    "proposals": "proposals (object box x1.5, 35 classes)",
    "tight_boxes": "tight object boxes (x1, the dense box RoI; 35 classes)",
    "grid": "grid cells (patches mode, dominant class, 35 classes)",
    "grid_things": "grid cells labelled by a thing",
    "grid_stuff": "grid cells labelled by stuff",
}


def format_teacher_regions(accuracy: Dict[str, Dict[str, float]],
                           rows: Optional[Sequence[str]] = None) -> List[str]:
    """A Markdown table of :func:`teacher_region_accuracy`'s rows."""
    lines = ["| regions | top-1 | top-5 | top-1 of regions | regions (n) | notes |",
             "|---|---|---|---|---|---|"]
    for key in rows or accuracy:
        r = accuracy[key]
        name = _ROW_TEXT.get(key, key.replace("grid_", "grid cells, "))
        notes = []
        if "top1_visible" in r:
            notes.append(f"top-1 is a class covering >= {VISIBLE_SHARE:.0%} of the cell: "
                         f"{r['top1_visible']:.1f}% of cells")
        if "thing_share" in r:
            notes.append(f"{r['thing_share']:.0f}% thing-labelled")
        lines.append(f"| {name} | {r['top1']:.1f} | {r['top5']:.1f} | {r['top1_regions']:.1f} | "
                     f"{r['regions']} | "
                     f"{'; '.join(notes)} |")
    return lines
