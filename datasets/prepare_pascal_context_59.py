#!/usr/bin/env python
"""Write PASCAL-Context-59 val semantic maps (classes 0..58, 255 = ignore) from the .mat files.

    python datasets/prepare_pascal_context_59.py [--root $DETECTRON2_DATASETS]
        [--labels labels.txt] [--split-file ImageSets/Main/val.txt] [--workers N]

Reads, under ``VOCdevkit/VOC2010/`` (relative paths are under it): PASCAL-Context's ``labels.txt``
(``<id>: <name>`` lines, the 459 full classes), the split file (default: VOC2010's 5105 Main val
images, the PASCAL-Context val set) and ``trainval/<id>.mat`` (``LabelMap``: 0 = unlabelled,
k = class k of labels.txt). The 59 classes are found in labels.txt by name (an error lists any
that are not); their pixels get the index of the name in ``PASCAL_CONTEXT_59_CLASSES`` (0..58),
every other pixel (unlabelled or one of the 400 other classes) gets 255. Writes uint8
``annotations_detectron2/pc59_val/<id>.png``, read by ``context_59_val_sem_seg``.
"""
import argparse
import functools
import os

import numpy as np
from PIL import Image

from clipself.data.datasets.paths import require_path
from clipself.data.datasets.prepare_utils import basic_argument_parser, parallel_map, progress
from clipself.data.datasets.sem_seg_benchmarks import (
    GET_PASCAL_CONTEXT,
    PASCAL_CONTEXT_59_CLASSES,
    SEM_SEG_LAYOUT,
    read_image_list,
    read_pascal_context_label_map,
    read_pascal_context_labels,
)

VOC2010_ROOT = "VOCdevkit/VOC2010"
IGNORE_LABEL = 255


def get_parser() -> argparse.ArgumentParser:
    parser = basic_argument_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--labels", default="labels.txt",
                        help="PASCAL-Context labels.txt (relative to VOCdevkit/VOC2010)")
    parser.add_argument("--split-file", default="ImageSets/Main/val.txt",
                        help="image ids to convert (relative to VOCdevkit/VOC2010)")
    return parser


def pc59_lut(labels: dict) -> np.ndarray:
    """Look-up table PASCAL-Context label id -> PC-59 trainId (uint8, 255 elsewhere).

    Args:
        labels (dict[int, str]): labels.txt as parsed by ``read_pascal_context_labels``.
    """
    by_name = {name.strip().lower(): i for i, name in labels.items()}
    missing = [n for n in PASCAL_CONTEXT_59_CLASSES if n not in by_name]
    if missing:
        raise ValueError(f"labels.txt lacks these PASCAL-Context-59 classes: {missing}")
    lut = np.full(max(labels) + 1, IGNORE_LABEL, dtype=np.uint8)
    for train_id, name in enumerate(PASCAL_CONTEXT_59_CLASSES):
        lut[by_name[name]] = train_id
    return lut


def _convert_one(image_id, mat_dir, dst_dir, lut):
    label = read_pascal_context_label_map(os.path.join(mat_dir, image_id + ".mat"),
                                          GET_PASCAL_CONTEXT)
    if label.min() < 0 or label.max() >= len(lut):
        raise ValueError(f"{image_id}.mat: labels {label.min()}..{label.max()} outside labels.txt")
    Image.fromarray(lut[label]).save(os.path.join(dst_dir, image_id + ".png"))
    return image_id


def main(argv=None) -> str:
    args = get_parser().parse_args(argv)
    base = os.path.join(args.root, VOC2010_ROOT)
    labels_file = require_path(os.path.join(base, args.labels), GET_PASCAL_CONTEXT)
    lut = pc59_lut(read_pascal_context_labels(labels_file))
    image_ids = read_image_list(os.path.join(base, args.split_file), GET_PASCAL_CONTEXT)
    mat_dir = require_path(os.path.join(base, "trainval"), GET_PASCAL_CONTEXT)
    dst_dir = os.path.join(args.root, SEM_SEG_LAYOUT["context_59_val_sem_seg"]["sem_seg_root"])
    os.makedirs(dst_dir, exist_ok=True)
    fn = functools.partial(_convert_one, mat_dir=mat_dir, dst_dir=dst_dir, lut=lut)
    for _ in progress(parallel_map(fn, image_ids, args.workers), len(image_ids), "[pc-59] val"):
        pass
    return dst_dir


if __name__ == "__main__":
    main()
