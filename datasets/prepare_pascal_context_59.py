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
import os

import numpy as np
from PIL import Image

from clipself.data.datasets.prepare_utils import (
    convert_pascal_context,
    pascal_context_argument_parser,
)
from clipself.data.datasets.sem_seg_benchmarks import (
    GET_PASCAL_CONTEXT,
    PASCAL_CONTEXT_59_CLASSES,
    read_pascal_context_label_map,
)

IGNORE_LABEL = 255


def get_parser() -> argparse.ArgumentParser:
    return pascal_context_argument_parser(__doc__.split("\n\n")[0])


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


def _convert_one(lut, mat_dir, dst_dir, image_id):
    label = read_pascal_context_label_map(os.path.join(mat_dir, image_id + ".mat"),
                                          GET_PASCAL_CONTEXT)
    if label.min() < 0 or label.max() >= len(lut):
        raise ValueError(f"{image_id}.mat: labels {label.min()}..{label.max()} outside labels.txt")
    Image.fromarray(lut[label]).save(os.path.join(dst_dir, image_id + ".png"))
    return image_id


def main(argv=None) -> str:
    args = get_parser().parse_args(argv)
    dst_dir, _ = convert_pascal_context(args, "context_59_val_sem_seg", pc59_lut, _convert_one,
                                        "[pc-59] val")
    return dst_dir


if __name__ == "__main__":
    main()
