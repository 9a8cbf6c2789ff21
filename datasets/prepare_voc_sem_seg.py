#!/usr/bin/env python
"""Write PASCAL VOC 2012 val semantic maps for VOC-20 and VOC-21 (with background).

    python datasets/prepare_voc_sem_seg.py [--root $DETECTRON2_DATASETS]
        [--label-dir SegmentationClass] [--split-file ImageSets/Segmentation/val.txt]
        [--workers N]

Reads ``VOCdevkit/VOC2012/<label-dir>/<id>.png`` for every id of the split file (relative paths
are under ``VOCdevkit/VOC2012``). The labels are palette indices (``SegmentationClass``) or
grey values (``SegmentationClassAug``): 0 = background, 1..20 = the VOC classes, 255 = object
border / void. Writes two uint8 PNG sets:

- ``annotations_detectron2/val``: classes 0..19 (label - 1), background and 255 -> 255
  (``voc_2012_val_sem_seg``, background ignored);
- ``annotations_detectron2_bg/val``: classes 0..19, background -> 20, 255 -> 255
  (``voc_2012_val_background_sem_seg``).
"""
import argparse
import functools
import os

import numpy as np
from PIL import Image

from clipself.data.datasets.paths import require_path
from clipself.data.datasets.prepare_utils import basic_argument_parser, parallel_map, progress
from clipself.data.datasets.sem_seg_benchmarks import SEM_SEG_LAYOUT, read_image_list

_GET_VOC = "Download VOCtrainval_11-May-2012.tar and extract it into the datasets root."
VOC_ROOT = "VOCdevkit/VOC2012"
IGNORE_LABEL = 255
BACKGROUND = 20


def get_parser() -> argparse.ArgumentParser:
    parser = basic_argument_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--label-dir", default="SegmentationClass",
                        help="label folder under VOCdevkit/VOC2012 (or SegmentationClassAug)")
    parser.add_argument("--split-file", default="ImageSets/Segmentation/val.txt",
                        help="image ids to convert (relative to VOCdevkit/VOC2012)")
    return parser


def voc_luts() -> tuple:
    """(256,) uint8 look-up tables raw VOC label -> (VOC-20 label, VOC-21 label)."""
    lut20 = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    lut20[1:21] = np.arange(20)
    lut21 = lut20.copy()
    lut21[0] = BACKGROUND
    return lut20, lut21


def _convert_one(image_id, src_dir, dst_dirs, luts):
    path = os.path.join(src_dir, image_id + ".png")
    require_path(path, _GET_VOC)
    image = Image.open(path)
    if image.mode not in ("P", "L"):
        raise ValueError(f"{path}: expected a palette or grey PNG of class indices, got mode "
                         f"{image.mode} (colour-coded labels are not supported)")
    raw = np.asarray(image)
    for dst_dir, lut in zip(dst_dirs, luts):
        Image.fromarray(lut[raw]).save(os.path.join(dst_dir, image_id + ".png"))
    return image_id


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    base = os.path.join(args.root, VOC_ROOT)
    src_dir = require_path(os.path.join(base, args.label_dir), _GET_VOC)
    image_ids = read_image_list(os.path.join(base, args.split_file), _GET_VOC)
    dst_dirs = [os.path.join(args.root, SEM_SEG_LAYOUT[name]["sem_seg_root"])
                for name in ("voc_2012_val_sem_seg", "voc_2012_val_background_sem_seg")]
    for d in dst_dirs:
        os.makedirs(d, exist_ok=True)
    fn = functools.partial(_convert_one, src_dir=src_dir, dst_dirs=dst_dirs, luts=voc_luts())
    for _ in progress(parallel_map(fn, image_ids, args.workers), len(image_ids), "[voc] val"):
        pass
    return {"voc20": dst_dirs[0], "voc21": dst_dirs[1]}


if __name__ == "__main__":
    main()
