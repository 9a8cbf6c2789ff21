"""OV-LVIS: LVIS v1 with the 337 rare classes held out as novel (866 frequent + common are base).

Registered datasets:

- ``ov_lvis_train``: ``lvis/lvis_v1_train_base.json`` (made by
  ``python datasets/prepare_ov_lvis.py``), LVIS v1 train with the annotations of base classes only;
  all 1203 classes are listed.
- ``ov_lvis_val``: the official ``lvis/lvis_v1_val.json``.

Images are read from ``coco/{train2017,val2017}`` as named by each image's ``coco_url``. Class names
are LVIS's raw ``name`` fields (underscores kept), contiguous id = LVIS id - 1.
"""
import functools
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.lvis import load_lvis_json
from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES
from detectron2.data.datasets.lvis_v1_category_image_count import LVIS_CATEGORY_IMAGE_COUNT

from .paths import require_path

__all__ = ["OV_LVIS_SPLITS", "OV_LVIS_NORARE_INFO_FILE", "get_ov_lvis_metadata", "register_ov_lvis"]

# split -> annotation json relative to the datasets root; images are under coco/ for both.
OV_LVIS_SPLITS = {
    "train": "lvis/lvis_v1_train_base.json",
    "val": "lvis/lvis_v1_val.json",
}
OV_LVIS_NORARE_INFO_FILE = "lvis/lvis_v1_train_cat_norare_info.json"
_HOW_TO_MAKE = {
    "train": "Create it with: python datasets/prepare_ov_lvis.py",
    "val": "Download lvis_v1_val.json into lvis/ (see datasets/README.md).",
}
_GET_IMAGES = "Download COCO 2017 images into coco/{train2017,val2017}/ (see datasets/README.md)."

_CATEGORIES = sorted(LVIS_CATEGORIES, key=lambda c: c["id"])


def get_ov_lvis_metadata() -> dict:
    """Class metadata shared by both OV-LVIS splits (from Detectron2's LVIS v1 table, no disk).

    Returns:
        dict: ``thing_classes`` (1203 names in id order), ``thing_dataset_id_to_contiguous_id``
        (LVIS id -> id - 1), ``base_classes`` (frequency ``f`` or ``c``, 866 names) and
        ``novel_classes`` (frequency ``r``, 337 names).
    """
    return {
        "thing_classes": [c["name"] for c in _CATEGORIES],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(_CATEGORIES)},
        "base_classes": [c["name"] for c in _CATEGORIES if c["frequency"] in ("f", "c")],
        "novel_classes": [c["name"] for c in _CATEGORIES if c["frequency"] == "r"],
    }


def _norare_class_image_count() -> list:
    """Detectron2's LVIS v1 train image counts with rare classes set to 0 (federated loss)."""
    rare = {c["id"] for c in _CATEGORIES if c["frequency"] == "r"}
    return [
        {"id": c["id"], "image_count": 0 if c["id"] in rare else c["image_count"]}
        for c in LVIS_CATEGORY_IMAGE_COUNT
    ]


def _load_ov_lvis(json_file: str, image_root: str, how_to_make: str) -> list:
    require_path(json_file, how_to_make)
    require_path(image_root, _GET_IMAGES)
    # dataset_name=None: detectron2 maps category ids to id - 1, which is our contiguous order.
    return load_lvis_json(json_file, image_root, dataset_name=None)


def register_ov_lvis(root: str, prefix: str = "ov_lvis") -> None:
    """Register ``{prefix}_train`` and ``{prefix}_val`` rooted at ``root`` (no disk access).

    Args:
        root (str): datasets root (the folder that holds ``lvis/`` and ``coco/``).
        prefix (str): dataset name prefix.
    """
    meta = get_ov_lvis_metadata()
    # detectron2's LVIS loader appends "train2017/..." (from coco_url) to this string.
    image_root = os.path.join(root, "coco", "")
    for split, json_name in OV_LVIS_SPLITS.items():
        name = f"{prefix}_{split}"
        json_file = os.path.join(root, json_name)
        DatasetCatalog.register(
            name, functools.partial(_load_ov_lvis, json_file, image_root, _HOW_TO_MAKE[split])
        )
        extra = {"class_image_count": _norare_class_image_count()} if split == "train" else {}
        MetadataCatalog.get(name).set(
            json_file=json_file, image_root=image_root, evaluator_type="lvis", **meta, **extra
        )
