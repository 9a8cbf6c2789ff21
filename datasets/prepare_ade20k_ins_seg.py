#!/usr/bin/env python
"""Write ADE20K-150 instance annotations (100 thing classes) as COCO-format json with RLE masks.

    python datasets/prepare_ade20k_ins_seg.py [--root $DETECTRON2_DATASETS] [--splits train val]
        [--catid-mapping FILE] [--img-cat-ids FILE] [--workers N]

Reads ``ADEChallengeData2016/annotations_instance/{training,validation}/*.png`` (R = instance
class id 1..100, G = instance id, 0 = none) and the instance challenge's files
``ADEChallengeData2016/ade20k_instance_catid_mapping.txt`` (instance class id -> ADE-150 label;
when missing, instance class k is taken to be the k-th thing class in ADE-150 order) and
``ADEChallengeData2016/ade20k_instance_imgCatIds.json`` (optional, cross-checked). Writes
``ADEChallengeData2016/ade20k_instance_{train,val}.json``: one annotation per instance, category id
= ADE-150 index 0..149 (the 100 things are listed), integer image ids from the file names (the same
as in ``ade20k_panoptic_*.json``). The datasets ``ade20k_instance_{train,val}`` read them.
"""
import argparse
import functools
import os

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from clipself.data.datasets.ade20k import (
    ADE20K_150_CLASSES,
    ADE20K_150_THING_IDS,
    ADE20K_SPLITS,
    ade20k_image_id,
    instances_from_png,
)
from clipself.data.datasets.prepare_utils import (
    GET_ADE_INSTANCES,
    ade20k_argument_parser,
    ade20k_instance_mapping,
    list_files,
    parallel_map,
    progress,
    write_json,
)

_GET_INSTANCES = GET_ADE_INSTANCES


def get_parser() -> argparse.ArgumentParser:
    return ade20k_argument_parser(__doc__.split("\n\n")[0], instances=True)


def annotations_from_png(instance_rgb: np.ndarray, mapping: dict) -> list:
    """COCO annotations (without ``id`` and ``image_id``) of the instances in one instance PNG."""
    anns = []
    for category_id, mask in instances_from_png(instance_rgb, mapping):
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        area = int(mask_util.area(rle))
        bbox = [float(v) for v in mask_util.toBbox(rle)]
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append({"category_id": int(category_id), "iscrowd": 0, "area": area, "bbox": bbox,
                     "segmentation": rle})
    return anns


def _convert_one(job, instance_dir, mapping):
    index, name = job
    instance = np.asarray(Image.open(os.path.join(instance_dir, name)).convert("RGB"))
    height, width = instance.shape[:2]
    image = {"id": ade20k_image_id(name, index), "file_name": os.path.splitext(name)[0] + ".jpg",
             "height": height, "width": width}
    return image, annotations_from_png(instance, mapping)


def convert_split(root: str, split: str, mapping: dict, workers: int = 1) -> str:
    """Write ``ade20k_instance_{split}.json``; returns its path."""
    rel = ADE20K_SPLITS[split]
    instance_dir = os.path.join(root, rel["instance_png_root"])
    names = list_files(instance_dir, ".png", _GET_INSTANCES)
    fn = functools.partial(_convert_one, instance_dir=instance_dir, mapping=mapping)
    images, annotations = [], []
    results = parallel_map(fn, list(enumerate(names)), workers)
    for image, anns in progress(results, len(names), f"[ade20k instances] {split}"):
        images.append(image)
        for ann in anns:
            ann.update(id=len(annotations) + 1, image_id=image["id"])
            annotations.append(ann)
    categories = [{"id": i, "name": ADE20K_150_CLASSES[i]} for i in ADE20K_150_THING_IDS]
    print(f"[ade20k instances] {split}: {len(annotations)} instances on {len(images)} images")
    data = {"images": images, "annotations": annotations, "categories": categories}
    return write_json(data, os.path.join(root, rel["json_file"]))


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    mapping = ade20k_instance_mapping(args)
    return {split: convert_split(args.root, split, mapping, args.workers)
            for split in args.splits}


if __name__ == "__main__":
    main()
