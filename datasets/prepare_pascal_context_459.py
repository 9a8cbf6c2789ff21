#!/usr/bin/env python
"""Write PASCAL-Context-459 val semantic maps (uint16 .tif, classes 0..458, 459 = ignore).

    python datasets/prepare_pascal_context_459.py [--root $DETECTRON2_DATASETS]
        [--labels labels.txt] [--split-file ImageSets/Main/val.txt] [--workers N]

Reads, under ``VOCdevkit/VOC2010/`` (relative paths are under it): PASCAL-Context's ``labels.txt``
(``<id>: <name>``, ids 1..459; a ``0:`` line, if any, is the unlabelled value and is skipped), the
split file (default: VOC2010's 5105 Main val images, the PASCAL-Context val set) and
``trainval/<id>.mat`` (``LabelMap``). Writes

- ``annotations_detectron2/pc459_val/<id>.tif``: uint16 ``LabelMap - 1`` (class k of labels.txt
  -> k - 1), as CAT-Seg does, with unlabelled pixels (``LabelMap == 0``) set to 459, the
  ``ignore_label`` of ``context_459_val_sem_seg``. (CAT-Seg subtracts 1 from the uint16 map, which
  would turn 0 into 65535, a value Detectron2's evaluator cannot take with ignore_label 459; the
  maps are identical wherever a pixel is labelled.)
- ``pc459_classes.json``: ``[{"id": k, "name": ...}]`` for k = 1..459 in order; list entry i is
  the name of label value i. ``context_459_val_sem_seg`` reads its ``stuff_classes`` from it.
"""
import argparse
import os

import numpy as np
from PIL import Image

from clipself.data.datasets.prepare_utils import (
    convert_pascal_context,
    pascal_context_argument_parser,
    write_json,
)
from clipself.data.datasets.sem_seg_benchmarks import (
    GET_PASCAL_CONTEXT,
    PC459_IGNORE_LABEL,
    SEM_SEG_LAYOUT,
    read_pascal_context_label_map,
)

CLASSES_JSON = SEM_SEG_LAYOUT["context_459_val_sem_seg"]["classes"]


def get_parser() -> argparse.ArgumentParser:
    return pascal_context_argument_parser(__doc__.split("\n\n")[0])


def pc459_classes(labels: dict) -> list:
    """``[{"id", "name"}]`` for ids 1..K of labels.txt (which must be contiguous, K <= 459)."""
    ids = sorted(i for i in labels if i != 0)
    if ids != list(range(1, len(ids) + 1)) or len(ids) > PC459_IGNORE_LABEL:
        raise ValueError(f"labels.txt: expected ids 1..K with K <= {PC459_IGNORE_LABEL} "
                         f"(besides an optional 0), got {ids[:3]}..{ids[-3:]}")
    if len(ids) != PC459_IGNORE_LABEL:
        print(f"note: labels.txt has {len(ids)} classes, not {PC459_IGNORE_LABEL}")
    return [{"id": i, "name": labels[i]} for i in ids]


def to_pc459(label_map: np.ndarray, num_classes: int) -> np.ndarray:
    """``LabelMap`` (0 = unlabelled, 1..K) -> uint16 labels 0..K-1, unlabelled -> 459."""
    if label_map.min() < 0 or label_map.max() > num_classes:
        raise ValueError(f"labels {label_map.min()}..{label_map.max()} outside 0..{num_classes}")
    return np.where(label_map == 0, PC459_IGNORE_LABEL, label_map - 1).astype(np.uint16)


def _convert_one(classes, mat_dir, dst_dir, image_id):
    label = read_pascal_context_label_map(os.path.join(mat_dir, image_id + ".mat"),
                                          GET_PASCAL_CONTEXT)
    try:
        out = to_pc459(label, len(classes))
    except ValueError as e:
        raise ValueError(f"{image_id}.mat: {e}") from None
    Image.fromarray(out).save(os.path.join(dst_dir, image_id + ".tif"))
    return image_id


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    dst_dir, classes = convert_pascal_context(args, "context_459_val_sem_seg", pc459_classes,
                                              _convert_one, "[pc-459] val")
    classes_json = write_json(classes, os.path.join(args.root, CLASSES_JSON))
    return {"sem_seg_root": dst_dir, "classes": classes_json}


if __name__ == "__main__":
    main()
