"""COCO panoptic with semantic maps, Mask2Former convention (133 classes: 80 things, 53 stuff).

Registered datasets: ``coco_2017_{train,val}_panoptic_with_sem_seg``. Each record has
``file_name``, ``image_id``, ``pan_seg_file_name``, ``sem_seg_file_name``
and ``segments_info`` (``id``, contiguous ``category_id`` over all 133 classes, ``isthing``,
``iscrowd``, ``area``, ``bbox``). The semantic maps are made by
``python datasets/prepare_coco_semantic_from_panoptic.py``.

Detectron2 itself registers ``coco_2017_{train,val}_panoptic``, ``..._separated`` and
``..._stuffonly``; the ``_with_sem_seg`` names do not collide with them.
"""
import functools
import os
from typing import Dict

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from detectron2.data.datasets.coco_panoptic import load_coco_panoptic_json

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

    Detectron2's ``load_coco_panoptic_json`` reads the records (images are the annotation
    names with ``.jpg``); this adds ``sem_seg_file_name`` (Mask2Former's convention) and turns
    missing folders and unknown category ids into errors that say what to do.

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
    meta = {"thing_dataset_id_to_contiguous_id": thing_map,
            "stuff_dataset_id_to_contiguous_id": stuff_map}
    try:
        records = load_coco_panoptic_json(panoptic_json, image_root, panoptic_root, meta)
    except KeyError as e:
        raise KeyError(
            f"{panoptic_json}: a segment has category_id={e.args[0]}, which is in neither the "
            f"thing nor the stuff classes of this dataset's metadata") from None
    for record in records:
        stem = os.path.splitext(os.path.basename(record["pan_seg_file_name"]))[0]
        record["sem_seg_file_name"] = os.path.join(sem_seg_root, stem + ".png")
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
