#!/usr/bin/env python
"""Write ADE20K-150 semantic maps in the Detectron2 convention (classes 0..149, 255 = ignore).

    python datasets/prepare_ade20k_sem_seg.py [--root $DETECTRON2_DATASETS]
        [--splits train val] [--workers N]

Reads ``ADEChallengeData2016/annotations/{training,validation}/*.png`` (0 = unlabelled, 1..150)
and writes ``ADEChallengeData2016/annotations_detectron2/{training,validation}/*.png`` with
label - 1 (0 -> 255). The datasets ``ade20k_sem_seg_{train,val}`` and the ``sem_seg_file_name`` of
``ade20k_panoptic_{train,val}`` read them.
"""
import argparse
import functools
import os

import numpy as np
from PIL import Image

from clipself.data.datasets.ade20k import ADE20K_SPLITS
from clipself.data.datasets.prepare_utils import (
    GET_ADE,
    ade20k_argument_parser,
    list_files,
    parallel_map,
    progress,
)

_GET_ADE = GET_ADE


def get_parser() -> argparse.ArgumentParser:
    return ade20k_argument_parser(__doc__.split("\n\n")[0], instances=False)


def shift_labels(label: np.ndarray) -> np.ndarray:
    """ADE label map (0 = unlabelled, 1..150) -> uint8 map (0..149, 255 = ignore)."""
    label = label.astype(np.int32)
    return np.where(label == 0, 255, label - 1).astype(np.uint8)


def _convert_one(name, src_dir, dst_dir):
    label = np.asarray(Image.open(os.path.join(src_dir, name)))
    Image.fromarray(shift_labels(label)).save(os.path.join(dst_dir, name))
    return name


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    outputs = {}
    for split in args.splits:
        src_dir = os.path.join(args.root, ADE20K_SPLITS[split]["raw_sem_seg_root"])
        dst_dir = os.path.join(args.root, ADE20K_SPLITS[split]["sem_seg_root"])
        names = list_files(src_dir, ".png", _GET_ADE)
        os.makedirs(dst_dir, exist_ok=True)
        fn = functools.partial(_convert_one, src_dir=src_dir, dst_dir=dst_dir)
        for _ in progress(parallel_map(fn, names, args.workers), len(names),
                          f"[ade20k semseg] {split}"):
            pass
        outputs[split] = dst_dir
    return outputs


if __name__ == "__main__":
    main()
