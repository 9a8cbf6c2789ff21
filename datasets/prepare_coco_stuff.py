#!/usr/bin/env python
"""Write COCO-Stuff-171 semantic maps in the Detectron2 convention (trainIds 0..170, 255 = ignore).

    python datasets/prepare_coco_stuff.py [--root $DETECTRON2_DATASETS] [--splits train val]
        [--workers N]

Reads the COCO-Stuff ``stuffthingmaps_trainval2017.zip`` unzipped into ``coco/stuffthingmaps/``
(``{train,val}2017/*.png``: uint8 raw value = COCO-Stuff id - 1, i.e. 0..181 with the gaps of the
11 unused COCO thing ids, 255 = unlabeled) and writes
``coco/stuffthingmaps_detectron2/{train,val}2017/*.png``: uint8 trainIds 0..170 (the 80 things in
COCO id order, then the 91 stuff classes ``banner`` .. ``wood``), 255 for unlabeled and unused ids.
The datasets ``coco_2017_{train,val}_stuff_sem_seg`` read them.
"""
import argparse
import functools
import os

import numpy as np
from PIL import Image

from clipself.data.datasets.prepare_utils import (
    basic_argument_parser,
    list_files,
    parallel_map,
    progress,
)
from clipself.data.datasets.sem_seg_benchmarks import COCO_STUFF_171_IDS, SEM_SEG_LAYOUT

_GET_STUFF = ("Download COCO-Stuff stuffthingmaps_trainval2017.zip and unzip it into "
              "coco/stuffthingmaps/.")
RAW_ROOT = "coco/stuffthingmaps/{split}2017"
IGNORE_LABEL = 255


def get_parser() -> argparse.ArgumentParser:
    return basic_argument_parser(__doc__.split("\n\n")[0], splits=("train", "val"))


def stuff_lut() -> np.ndarray:
    """(256,) uint8 look-up table: raw stuffthingmap value (COCO-Stuff id - 1) -> trainId."""
    lut = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    for train_id, coco_id in enumerate(COCO_STUFF_171_IDS):
        lut[coco_id - 1] = train_id
    return lut


def _convert_one(name, src_dir, dst_dir, lut):
    raw = np.asarray(Image.open(os.path.join(src_dir, name)))
    if raw.ndim != 2 or raw.dtype != np.uint8:
        raise ValueError(f"{os.path.join(src_dir, name)}: expected a single-channel uint8 map")
    Image.fromarray(lut[raw]).save(os.path.join(dst_dir, name))
    return name


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    lut = stuff_lut()
    outputs = {}
    for split in args.splits:
        src_dir = os.path.join(args.root, RAW_ROOT.format(split=split))
        dst_dir = os.path.join(args.root,
                               SEM_SEG_LAYOUT[f"coco_2017_{split}_stuff_sem_seg"]["sem_seg_root"])
        names = list_files(src_dir, ".png", _GET_STUFF)
        os.makedirs(dst_dir, exist_ok=True)
        fn = functools.partial(_convert_one, src_dir=src_dir, dst_dir=dst_dir, lut=lut)
        for _ in progress(parallel_map(fn, names, args.workers), len(names),
                          f"[coco-stuff] {split}"):
            pass
        outputs[split] = dst_dir
    return outputs


if __name__ == "__main__":
    main()
