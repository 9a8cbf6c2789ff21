#!/usr/bin/env python
"""Write 133-class semantic maps from the COCO panoptic annotations (Mask2Former convention).

    python datasets/prepare_coco_semantic_from_panoptic.py [--root $DETECTRON2_DATASETS]
        [--splits train val] [--workers N]

Reads ``coco/annotations/panoptic_{split}2017.json`` and ``coco/panoptic_{split}2017/*.png`` and
writes ``coco/panoptic_semseg_{split}2017/*.png``: uint8 class index 0..132 in Detectron2's
``COCO_CATEGORIES`` order (the contiguous ids of ``coco_2017_*_panoptic_with_sem_seg``), 255 where
no segment is labelled. The datasets ``coco_2017_{train,val}_panoptic_with_sem_seg`` read them.
"""
import argparse
import functools
import os

import numpy as np
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from panopticapi.utils import rgb2id
from PIL import Image

from clipself.data.datasets.coco_panoptic import COCO_PANOPTIC_SPLITS
from clipself.data.datasets.paths import dataset_root, require_path
from clipself.data.datasets.prepare_utils import load_json, parallel_map, progress

_GET_PANOPTIC = ("Download and unzip COCO panoptic annotations (panoptic_annotations_trainval2017"
                 ".zip and the panoptic_{train,val}2017.zip inside it) into coco/.")
IGNORE_LABEL = 255


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=dataset_root(),
                        help="datasets root (default: $DETECTRON2_DATASETS or ./datasets)")
    parser.add_argument("--splits", nargs="+", default=["train", "val"], choices=["train", "val"])
    parser.add_argument("--workers", type=int, default=1, help="processes (default: 1)")
    return parser


def panoptic_to_semantic(pan_rgb: np.ndarray, segments_info: list, id_map: dict) -> np.ndarray:
    """Turn one panoptic PNG (H, W, 3) into a uint8 (H, W) class-index map (255 = unlabelled).

    Args:
        pan_rgb (ndarray): the panoptic PNG, segment id = R + 256 G + 256^2 B.
        segments_info (list[dict]): the image's segments (``id``, ``category_id``).
        id_map (dict[int, int]): COCO category id -> class index 0..132.
    """
    pan = rgb2id(pan_rgb)
    out = np.full(pan.shape, IGNORE_LABEL, dtype=np.uint8)
    for seg in segments_info:
        out[pan == seg["id"]] = id_map[seg["category_id"]]
    return out


def _convert_one(job, id_map):
    src, dst, segments_info = job
    pan = np.asarray(Image.open(src).convert("RGB"))
    Image.fromarray(panoptic_to_semantic(pan, segments_info, id_map)).save(dst)
    return dst


def convert_split(root: str, split: str, workers: int = 1) -> str:
    """Convert one split; returns the output folder."""
    paths = {k: os.path.join(root, v) for k, v in COCO_PANOPTIC_SPLITS[split].items()}
    data = load_json(paths["panoptic_json"], _GET_PANOPTIC)
    require_path(paths["panoptic_root"], _GET_PANOPTIC)
    out_dir = paths["sem_seg_root"]
    os.makedirs(out_dir, exist_ok=True)
    jobs = [(os.path.join(paths["panoptic_root"], ann["file_name"]),
             os.path.join(out_dir, os.path.splitext(ann["file_name"])[0] + ".png"),
             ann["segments_info"]) for ann in data["annotations"]]
    id_map = {c["id"]: i for i, c in enumerate(COCO_CATEGORIES)}
    done = parallel_map(functools.partial(_convert_one, id_map=id_map), jobs, workers)
    for _ in progress(done, len(jobs), f"[coco semseg] {split}"):
        pass
    return out_dir


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    return {split: convert_split(args.root, split, args.workers) for split in args.splits}


if __name__ == "__main__":
    main()
