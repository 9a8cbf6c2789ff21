#!/usr/bin/env python
"""Write the OV-LVIS training annotations (rare classes held out as novel).

    python datasets/prepare_ov_lvis.py [--root $DETECTRON2_DATASETS]

Reads ``lvis/lvis_v1_train.json`` and writes:

- ``lvis/lvis_v1_train_base.json``: every image, the annotations of base classes only (frequency
  ``f`` or ``c``). All 1203 categories stay listed, with ``image_count = instance_count = 0`` for
  rare ones, and rare ids are removed from each image's ``neg_category_ids`` and
  ``not_exhaustive_category_ids`` (they carry information about novel classes).
- ``lvis/lvis_v1_train_cat_norare_info.json``: the list of the 1203 category dicts (as in the input)
  with ``image_count = 0`` for rare classes (frequency weights that never sample a novel class).

The dataset ``ov_lvis_train`` reads the first; ``ov_lvis_val`` reads the official
``lvis/lvis_v1_val.json`` directly.
"""
import argparse
import os

from clipself.data.datasets.ov_lvis import OV_LVIS_NORARE_INFO_FILE, OV_LVIS_SPLITS
from clipself.data.datasets.paths import dataset_root
from clipself.data.datasets.prepare_utils import load_json, write_json

_GET_LVIS = "Download lvis_v1_train.json (lvis_v1_train.json.zip) into lvis/."


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=dataset_root(),
                        help="datasets root (default: $DETECTRON2_DATASETS or ./datasets)")
    return parser


def remove_rare(data: dict) -> dict:
    """A copy of an LVIS json dict without any annotation or label of a rare class."""
    rare = {c["id"] for c in data["categories"] if c["frequency"] == "r"}
    out = {key: value for key, value in data.items()
           if key not in ("categories", "annotations", "images")}
    out["annotations"] = [a for a in data["annotations"] if a["category_id"] not in rare]
    out["images"] = []
    for img in data["images"]:
        img = dict(img)
        for key in ("neg_category_ids", "not_exhaustive_category_ids"):
            if key in img:
                img[key] = [i for i in img[key] if i not in rare]
        out["images"].append(img)
    out["categories"] = [
        dict(c, image_count=0, instance_count=0) if c["id"] in rare else dict(c)
        for c in data["categories"]
    ]
    return out


def norare_category_info(categories: list) -> list:
    """The category dicts with ``image_count`` set to 0 for rare classes."""
    return [dict(c, image_count=0) if c["frequency"] == "r" else dict(c) for c in categories]


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    data = load_json(os.path.join(args.root, "lvis/lvis_v1_train.json"), _GET_LVIS)
    out = remove_rare(data)
    num_rare = sum(c["frequency"] == "r" for c in data["categories"])
    print(f"[ov_lvis] kept {len(out['annotations'])}/{len(data['annotations'])} annotations "
          f"({len(data['categories']) - num_rare} base classes, {num_rare} rare removed) on "
          f"{len(out['images'])} images")
    return {
        "train": write_json(out, os.path.join(args.root, OV_LVIS_SPLITS["train"])),
        "norare_info": write_json(norare_category_info(data["categories"]),
                                  os.path.join(args.root, OV_LVIS_NORARE_INFO_FILE)),
    }


if __name__ == "__main__":
    main()
