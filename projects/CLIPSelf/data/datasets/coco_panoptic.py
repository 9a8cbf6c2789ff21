"""COCO panoptic with semantic maps, Mask2Former convention (133 classes: 80 things, 53 stuff).

Registered datasets: ``coco_2017_{train,val}_panoptic_with_sem_seg``. Each record has
``file_name``, ``image_id``, ``height``, ``width``, ``pan_seg_file_name``, ``sem_seg_file_name``
and ``segments_info`` (``id``, contiguous ``category_id`` over all 133 classes, ``isthing``,
``iscrowd``, ``area``, ``bbox``). The semantic maps are made by
``python datasets/prepare_coco_semantic_from_panoptic.py``.

Detectron2 itself registers ``coco_2017_{train,val}_panoptic``, ``..._separated`` and
``..._stuffonly``; the ``_with_sem_seg`` names do not collide with them.
"""
import functools
import json
import os
from typing import Dict

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from .paths import require_path

__all__ = [
    "COCO_PANOPTIC_SPLITS",
    "get_coco_panoptic_metadata",
    "load_panoptic_with_sem_seg",
    "register_coco_panoptic_with_sem_seg",
]

# split -> folders and files relative to the datasets root.
COCO_PANOPTIC_SPLITS = {
    split: {
        "image_root": f"coco/{split}2017",
        "panoptic_root": f"coco/panoptic_{split}2017",
        "panoptic_json": f"coco/annotations/panoptic_{split}2017.json",
        "sem_seg_root": f"coco/panoptic_semseg_{split}2017",
        "json_file": f"coco/annotations/instances_{split}2017.json",
    }
    for split in ("train", "val")
}
_GET_COCO = "Download COCO 2017 images and panoptic annotations (see datasets/README.md)."
_PREPARE_SEM = "Create it with: python datasets/prepare_coco_semantic_from_panoptic.py"


def get_coco_panoptic_metadata() -> dict:
    """Class metadata of COCO panoptic (contiguous ids = position in ``COCO_CATEGORIES``).

    Returns:
        dict: ``thing_classes`` (80), ``thing_colors``, ``stuff_classes`` (all 133),
        ``stuff_colors``, ``thing_dataset_id_to_contiguous_id`` (COCO id of a thing -> index
        among the 133) and ``stuff_dataset_id_to_contiguous_id`` (every COCO id -> index).
    """
    return {
        "thing_classes": [c["name"] for c in COCO_CATEGORIES if c["isthing"] == 1],
        "thing_colors": [c["color"] for c in COCO_CATEGORIES if c["isthing"] == 1],
        "stuff_classes": [c["name"] for c in COCO_CATEGORIES],
        "stuff_colors": [c["color"] for c in COCO_CATEGORIES],
        "thing_dataset_id_to_contiguous_id": {
            c["id"]: i for i, c in enumerate(COCO_CATEGORIES) if c["isthing"] == 1
        },
        "stuff_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(COCO_CATEGORIES)},
    }


def load_panoptic_with_sem_seg(panoptic_json: str, image_root: str, panoptic_root: str,
                               sem_seg_root: str, thing_map: Dict[int, int],
                               stuff_map: Dict[int, int], how_to_get: str,
                               how_to_make_sem_seg: str) -> list:
    """Load a COCO-format panoptic json into Detectron2 dicts with semantic-map file names.

    Args:
        panoptic_json (str): panoptic annotation json (``images``, ``annotations``).
        image_root (str): folder of the images.
        panoptic_root (str): folder of the panoptic PNGs named by ``annotations[i].file_name``.
        sem_seg_root (str): folder of the semantic PNGs, named like the panoptic PNGs.
        thing_map (dict[int, int]): dataset id -> contiguous id, thing classes.
        stuff_map (dict[int, int]): dataset id -> contiguous id, every class.
        how_to_get (str): what to do when the json or the image/panoptic folders are missing.
        how_to_make_sem_seg (str): command that creates ``sem_seg_root``.

    Returns:
        list[dict]: one record per annotated image, in the json's order.
    """
    for path in (panoptic_json, image_root, panoptic_root):
        require_path(path, how_to_get)
    require_path(sem_seg_root, how_to_make_sem_seg)
    with open(panoptic_json) as f:
        data = json.load(f)
    images = {img["id"]: img for img in data.get("images", [])}

    records = []
    for ann in data["annotations"]:
        image_id = ann["image_id"]
        stem = os.path.splitext(ann["file_name"])[0]
        img = images.get(image_id, {})
        record = {
            "file_name": os.path.join(image_root, img.get("file_name", stem + ".jpg")),
            "image_id": image_id,
            "pan_seg_file_name": os.path.join(panoptic_root, ann["file_name"]),
            "sem_seg_file_name": os.path.join(sem_seg_root, stem + ".png"),
        }
        if "height" in img and "width" in img:
            record["height"], record["width"] = img["height"], img["width"]
        segments = []
        for seg in ann["segments_info"]:
            seg = dict(seg)
            dataset_id = seg["category_id"]
            if dataset_id in thing_map:
                seg["category_id"], seg["isthing"] = thing_map[dataset_id], True
            elif dataset_id in stuff_map:
                seg["category_id"], seg["isthing"] = stuff_map[dataset_id], False
            else:
                raise KeyError(f"{panoptic_json}: image {image_id} has a segment of unknown "
                               f"category_id={dataset_id}")
            segments.append(seg)
        record["segments_info"] = segments
        records.append(record)
    return records


def register_coco_panoptic_with_sem_seg(root: str, prefix: str = "coco_2017") -> None:
    """Register ``{prefix}_{train,val}_panoptic_with_sem_seg`` rooted at ``root`` (no disk access).

    Args:
        root (str): datasets root (the folder that holds ``coco/``).
        prefix (str): dataset name prefix.
    """
    meta = get_coco_panoptic_metadata()
    for split, rel in COCO_PANOPTIC_SPLITS.items():
        name = f"{prefix}_{split}_panoptic_with_sem_seg"
        paths = {key: os.path.join(root, value) for key, value in rel.items()}
        DatasetCatalog.register(name, functools.partial(
            load_panoptic_with_sem_seg, paths["panoptic_json"], paths["image_root"],
            paths["panoptic_root"], paths["sem_seg_root"],
            meta["thing_dataset_id_to_contiguous_id"], meta["stuff_dataset_id_to_contiguous_id"],
            _GET_COCO, _PREPARE_SEM,
        ))
        MetadataCatalog.get(name).set(
            **paths,
            evaluator_type="coco_panoptic_seg",
            ignore_label=255,
            label_divisor=1000,
            **meta,
        )
