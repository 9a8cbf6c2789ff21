"""OV-COCO (Bansal et al. 2018, OVR-CNN): 65 COCO classes split into 48 base and 17 novel.

Registered datasets (files made by ``python datasets/prepare_ov_coco.py``):

- ``ov_coco_train``: train2017 images, annotations of the 48 base classes only.
- ``ov_coco_val``: val2017 images, annotations of all 65 classes.

Both list the same 65 ``thing_classes`` in COCO id order, so contiguous ids agree between them;
``base_classes`` and ``novel_classes`` name the split.
"""
import functools
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from .coco_format import load_coco_json_with_id_map

__all__ = [
    "OV_COCO_BASE_CLASSES",
    "OV_COCO_NOVEL_CLASSES",
    "OV_COCO_EXCLUDED_CLASSES",
    "OV_COCO_CLASSES",
    "OV_COCO_SPLITS",
    "OV_COCO_CLASS_SPLITS_FILE",
    "get_ov_coco_metadata",
    "register_ov_coco",
]

# The 48 base ("seen") classes, in COCO id order.
OV_COCO_BASE_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "train", "truck", "boat", "bench", "bird", "horse",
    "sheep", "bear", "zebra", "giraffe", "backpack", "handbag", "suitcase", "frisbee", "skis",
    "kite", "surfboard", "bottle", "fork", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "pizza", "donut", "chair", "bed", "toilet", "tv", "laptop",
    "mouse", "remote", "microwave", "oven", "toaster", "refrigerator", "book", "clock", "vase",
    "toothbrush",
)
# The 17 novel ("unseen") classes, in COCO id order.
OV_COCO_NOVEL_CLASSES = (
    "airplane", "bus", "cat", "dog", "cow", "elephant", "umbrella", "tie", "snowboard",
    "skateboard", "cup", "knife", "cake", "couch", "keyboard", "sink", "scissors",
)
# The 15 COCO classes that are in neither split (no WordNet synset in the original benchmark).
OV_COCO_EXCLUDED_CLASSES = (
    "traffic light", "fire hydrant", "stop sign", "parking meter", "sports ball", "baseball bat",
    "baseball glove", "tennis racket", "wine glass", "hot dog", "potted plant", "dining table",
    "cell phone", "teddy bear", "hair drier",
)

_COCO_THINGS = [c for c in COCO_CATEGORIES if c["isthing"] == 1]
_OV_COCO_CATEGORIES = [
    c for c in _COCO_THINGS if c["name"] in OV_COCO_BASE_CLASSES + OV_COCO_NOVEL_CLASSES
]
# All 65 classes in COCO id order (the contiguous order of both splits).
OV_COCO_CLASSES = tuple(c["name"] for c in _OV_COCO_CATEGORIES)

# split -> (image folder, annotation json), relative to the datasets root.
OV_COCO_SPLITS = {
    "train": ("coco/train2017", "coco/annotations/ov_coco/instances_train2017_base.json"),
    "val": ("coco/val2017", "coco/annotations/ov_coco/instances_val2017_ov65.json"),
}
OV_COCO_CLASS_SPLITS_FILE = "coco/annotations/ov_coco/class_splits.json"

_PREPARE = "Create it with: python datasets/prepare_ov_coco.py"
_GET_IMAGES = "Download COCO 2017 images into coco/{train2017,val2017}/ (see datasets/README.md)."


def get_ov_coco_metadata() -> dict:
    """Class metadata shared by both OV-COCO splits.

    Returns:
        dict: ``thing_classes`` (65 names), ``thing_dataset_id_to_contiguous_id`` (COCO id ->
        0..64), ``thing_colors``, ``base_classes`` (48 names) and ``novel_classes`` (17 names).
    """
    return {
        "thing_classes": list(OV_COCO_CLASSES),
        "thing_dataset_id_to_contiguous_id": {
            c["id"]: i for i, c in enumerate(_OV_COCO_CATEGORIES)
        },
        "thing_colors": [c["color"] for c in _OV_COCO_CATEGORIES],
        "base_classes": list(OV_COCO_BASE_CLASSES),
        "novel_classes": list(OV_COCO_NOVEL_CLASSES),
    }


def register_ov_coco(root: str, prefix: str = "ov_coco") -> None:
    """Register ``{prefix}_train`` and ``{prefix}_val`` rooted at ``root`` (no disk access).

    Args:
        root (str): datasets root (the folder that holds ``coco/``).
        prefix (str): dataset name prefix.
    """
    meta = get_ov_coco_metadata()
    for split, (image_dir, json_name) in OV_COCO_SPLITS.items():
        name = f"{prefix}_{split}"
        image_root = os.path.join(root, image_dir)
        json_file = os.path.join(root, json_name)
        DatasetCatalog.register(name, functools.partial(
            load_coco_json_with_id_map, json_file, image_root,
            meta["thing_dataset_id_to_contiguous_id"], _PREPARE, _GET_IMAGES,
        ))
        MetadataCatalog.get(name).set(
            json_file=json_file, image_root=image_root, evaluator_type="coco", **meta
        )
