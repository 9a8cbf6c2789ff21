#!/usr/bin/env python
"""Write ADE20K-150 panoptic annotations (150 classes, 100 things) in the COCO panoptic format.

    python datasets/prepare_ade20k_pan_seg.py [--root $DETECTRON2_DATASETS] [--splits train val]
        [--catid-mapping FILE] [--img-cat-ids FILE] [--workers N]

Reads, under ``ADEChallengeData2016/``, the semantic maps
``annotations/{training,validation}/*.png`` (0 = unlabelled, 1..150), the instance maps
``annotations_instance/{training,validation}/*.png`` (R = instance class id, G = instance id) and
the instance challenge's mapping files (as ``prepare_ade20k_ins_seg.py``). Each stuff class
present in the semantic map becomes one segment, each thing instance one segment (drawn over
stuff); pixels of a thing class outside every instance stay unlabelled. Writes
``ade20k_panoptic_{train,val}/*.png`` (RGB-encoded segment ids from panopticapi's
``IdGenerator``, seeded per image so runs are reproducible) and ``ade20k_panoptic_{train,val}.json``
(category id = ADE-150 index 0..149, integer image ids from the file names). The datasets
``ade20k_panoptic_{train,val}`` read them.
"""
import argparse
import functools
import os

import numpy as np
from panopticapi.utils import IdGenerator, id2rgb
from PIL import Image

from clipself.data.datasets.ade20k import (
    ADE20K_150_CATEGORIES,
    ADE20K_SPLITS,
    ade20k_colors,
    ade20k_image_id,
    instances_from_png,
)
from clipself.data.datasets.paths import require_path
from clipself.data.datasets.prepare_utils import (
    GET_ADE,
    GET_ADE_INSTANCES,
    ade20k_argument_parser,
    ade20k_instance_mapping,
    list_files,
    parallel_map,
    progress,
    write_json,
)

_GET_ADE = GET_ADE
_GET_INSTANCES = GET_ADE_INSTANCES


def get_parser() -> argparse.ArgumentParser:
    return ade20k_argument_parser(__doc__.split("\n\n")[0], instances=True)


def panoptic_categories() -> list:
    """The 150 categories of the panoptic json (``id``, ``name``, ``isthing``, ``color``)."""
    colors = ade20k_colors()
    return [{"id": i, "name": name, "isthing": isthing, "color": colors[i]}
            for i, (name, isthing) in enumerate(ADE20K_150_CATEGORIES)]


def panoptic_from_pngs(semantic: np.ndarray, instance_rgb: np.ndarray, mapping: dict,
                       seed: int = 0):
    """Merge one semantic map and one instance map into a panoptic segmentation.

    Args:
        semantic (ndarray): (H, W) raw ADE labels (0 = unlabelled, 1..150).
        instance_rgb (ndarray): (H, W, 3) instance PNG.
        mapping (dict[int, int]): instance class id -> category id 0..149.
        seed (int): seeds the colour jitter of panopticapi's IdGenerator.

    Returns:
        (ndarray, list[dict]): (H, W) int32 segment-id map (0 = unlabelled) and its segments
        (``id``, ``category_id``, ``iscrowd``, ``area``, ``bbox`` as x, y, w, h).
    """
    if semantic.shape != instance_rgb.shape[:2]:
        raise ValueError(f"semantic map {semantic.shape} and instance map "
                         f"{instance_rgb.shape[:2]} differ in size")
    categories = {c["id"]: c for c in panoptic_categories()}
    np.random.seed(seed)  # IdGenerator draws thing colours from numpy's global generator
    generator = IdGenerator(categories)
    pan = np.zeros(semantic.shape, dtype=np.int32)
    segment_category = {}
    for label in np.unique(semantic):
        category_id = int(label) - 1
        if label == 0 or categories[category_id]["isthing"]:
            continue
        segment_id = generator.get_id(category_id)
        pan[semantic == label] = segment_id
        segment_category[segment_id] = category_id
    for category_id, mask in instances_from_png(instance_rgb, mapping):
        segment_id = generator.get_id(category_id)
        pan[mask] = segment_id
        segment_category[segment_id] = category_id

    segments = []
    for segment_id, category_id in segment_category.items():
        ys, xs = np.nonzero(pan == segment_id)
        if len(ys) == 0:  # fully covered by instances drawn later
            continue
        x0, y0 = int(xs.min()), int(ys.min())
        segments.append({
            "id": int(segment_id), "category_id": category_id, "iscrowd": 0, "area": int(len(ys)),
            "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
        })
    return pan, segments


def _convert_one(job, semantic_dir, instance_dir, out_dir, mapping):
    index, name = job
    image_id = ade20k_image_id(name, index)
    semantic = np.asarray(Image.open(os.path.join(semantic_dir, name)))
    instance = np.asarray(Image.open(os.path.join(instance_dir, name)).convert("RGB"))
    pan, segments = panoptic_from_pngs(semantic, instance, mapping, seed=image_id % 2**32)
    Image.fromarray(id2rgb(pan)).save(os.path.join(out_dir, name))
    height, width = semantic.shape
    stem = os.path.splitext(name)[0]
    image = {"id": image_id, "file_name": stem + ".jpg", "height": height, "width": width}
    annotation = {"image_id": image_id, "file_name": stem + ".png", "segments_info": segments}
    return image, annotation


def convert_split(root: str, split: str, mapping: dict, workers: int = 1) -> str:
    """Write ``ade20k_panoptic_{split}/`` and ``ade20k_panoptic_{split}.json``; returns the json."""
    rel = ADE20K_SPLITS[split]
    semantic_dir = os.path.join(root, rel["raw_sem_seg_root"])
    instance_dir = require_path(os.path.join(root, rel["instance_png_root"]), _GET_INSTANCES)
    out_dir = os.path.join(root, rel["panoptic_root"])
    names = list_files(semantic_dir, ".png", _GET_ADE)
    os.makedirs(out_dir, exist_ok=True)
    fn = functools.partial(_convert_one, semantic_dir=semantic_dir, instance_dir=instance_dir,
                           out_dir=out_dir, mapping=mapping)
    images, annotations = [], []
    results = parallel_map(fn, list(enumerate(names)), workers)
    for image, annotation in progress(results, len(names), f"[ade20k panoptic] {split}"):
        images.append(image)
        annotations.append(annotation)
    data = {"images": images, "annotations": annotations, "categories": panoptic_categories()}
    return write_json(data, os.path.join(root, rel["panoptic_json"]))


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    mapping = ade20k_instance_mapping(args)
    return {split: convert_split(args.root, split, mapping, args.workers)
            for split in args.splits}


if __name__ == "__main__":
    main()
