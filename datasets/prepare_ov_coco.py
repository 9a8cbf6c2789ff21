#!/usr/bin/env python
"""Write the OV-COCO annotation files (48 base / 17 novel classes out of 65).

    python datasets/prepare_ov_coco.py [--root $DETECTRON2_DATASETS]

Reads ``coco/annotations/instances_{train,val}2017.json`` and writes, under
``coco/annotations/ov_coco/``:

- ``instances_train2017_base.json``: every train image, the annotations of the 48 base classes only;
  the 65 OV-COCO categories are listed (so train and val share the class list).
- ``instances_val2017_ov65.json``: every val image, the annotations of the 65 classes.
- ``class_splits.json``: ``{"base": [48 names], "novel": [17 names], "all": [65 names]}``.

The datasets ``ov_coco_train`` and ``ov_coco_val`` read them.
"""
import argparse
import os

from clipself.data.datasets.ov_coco import (
    OV_COCO_BASE_CLASSES,
    OV_COCO_CLASS_SPLITS_FILE,
    OV_COCO_CLASSES,
    OV_COCO_NOVEL_CLASSES,
    OV_COCO_SPLITS,
)
from clipself.data.datasets.paths import dataset_root
from clipself.data.datasets.prepare_utils import load_json, write_json

_GET_COCO = "Download COCO 2017 annotations (annotations_trainval2017.zip) into coco/annotations/."


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=dataset_root(),
                        help="datasets root (default: $DETECTRON2_DATASETS or ./datasets)")
    return parser


def filter_coco(data: dict, keep_classes) -> dict:
    """A copy of a COCO instances dict with only the annotations of ``keep_classes``.

    The ``categories`` become the 65 OV-COCO classes (COCO ids kept), images are all kept.

    Args:
        data (dict): COCO instances json content.
        keep_classes (iterable[str]): names of the classes whose annotations are kept.
    """
    by_name = {c["name"]: c for c in data["categories"]}
    missing = [name for name in OV_COCO_CLASSES if name not in by_name]
    if missing:
        raise ValueError(f"the json has no categories named {missing}; is it COCO 2017?")
    keep_ids = {by_name[name]["id"] for name in keep_classes}
    out = {key: value for key, value in data.items()
           if key not in ("categories", "annotations")}
    out["categories"] = sorted((by_name[name] for name in OV_COCO_CLASSES),
                               key=lambda c: c["id"])
    out["annotations"] = [a for a in data["annotations"] if a["category_id"] in keep_ids]
    return out


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    root = args.root
    jobs = {  # split -> (input json, classes whose annotations are kept)
        "train": ("coco/annotations/instances_train2017.json", OV_COCO_BASE_CLASSES),
        "val": ("coco/annotations/instances_val2017.json", OV_COCO_CLASSES),
    }
    outputs = {}
    for split, (src, keep) in jobs.items():
        data = load_json(os.path.join(root, src), _GET_COCO)
        out = filter_coco(data, keep)
        print(f"[ov_coco] {split}: kept {len(out['annotations'])}/{len(data['annotations'])} "
              f"annotations ({len(keep)} classes) on {len(out['images'])} images")
        outputs[split] = write_json(out, os.path.join(root, OV_COCO_SPLITS[split][1]))
        del data, out
    splits = {"base": list(OV_COCO_BASE_CLASSES), "novel": list(OV_COCO_NOVEL_CLASSES),
              "all": list(OV_COCO_CLASSES)}
    outputs["class_splits"] = write_json(splits, os.path.join(root, OV_COCO_CLASS_SPLITS_FILE))
    return outputs


if __name__ == "__main__":
    main()
