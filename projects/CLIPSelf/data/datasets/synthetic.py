"""Detectron2 registration of the synthetic world (``clipself.synthetic``).

Datasets (``prefix`` = ``"synth"`` by default), all read from ``ROOT/synthetic/`` as written by
``python datasets/prepare_synthetic.py --root ROOT`` (or :func:`prepare_world`):

* ``synth_ovd_{train,val}``: COCO detection (``load_coco_json``). 30 thing classes; the training
  split annotates the 24 base classes only, validation all 30. Metadata: ``thing_classes``,
  ``thing_dataset_id_to_contiguous_id``, ``json_file``, ``image_root``, ``evaluator_type="coco"``,
  ``base_classes``, ``novel_classes`` (the convention shared with the OV-COCO registration).
* ``synth_panoptic_{train,val}``: Mask2Former-style panoptic with semantic segmentation: records
  ``file_name, image_id, height, width, pan_seg_file_name, sem_seg_file_name, segments_info``
  (contiguous ``category_id`` over things + stuff, ``isthing``); metadata ``stuff_classes`` = all 35
  classes, ``panoptic_root``, ``panoptic_json``, ``json_file`` (``instances_*_all.json``),
  ``label_divisor=1000``, ``ignore_label=255``, ``evaluator_type="coco_panoptic_seg"``.
* ``synth_sem_seg_{train,val}``: semantic segmentation (``load_sem_seg``) over all 35 classes.
  In the training split novel things are void (255) in the panoptic and semantic maps, so the
  ``*_train`` segmentation datasets also carry ``seen_classes`` (24 base things + 5 stuff),
  which the vocabulary builders read.
* ``synth_captions_{train,val}``: records ``file_name, image_id, height, width, caption``.
* ``synth_proposals_{train,val}``: class-agnostic boxes of every object (novel included, no
  labels) as ``annotations``: region proposals for CLIPSelf distillation.

Registration touches no file; a missing file raises ``FileNotFoundError`` naming it and the
command that creates it when the dataset is loaded.
"""
import json
import os
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json, load_sem_seg

from clipself.synthetic import (
    ALL_CLASSES,
    BASE_CLASSES,
    IGNORE_LABEL,
    NOVEL_CLASSES,
    PANOPTIC_LABEL_DIVISOR,
    THING_CLASSES,
    THING_IDS,
    prepare_world,
    world_paths,
)
from clipself.synthetic.writer import PREPARE_COMMAND, SPLITS

from .paths import require_path

__all__ = [
    "register_synthetic", "prepare_world", "load_synthetic_panoptic", "load_synthetic_captions",
]


def _require(path: str, root: str) -> str:
    return require_path(path, "Create the synthetic world with: "
                        + PREPARE_COMMAND.format(root=root))


def _register(name: str, loader, **metadata) -> None:
    """Register ``name`` (replacing an earlier registration of the same name) with ``metadata``."""
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**metadata)


def _common_metadata() -> dict:
    return {
        "thing_classes": list(THING_CLASSES),
        "thing_dataset_id_to_contiguous_id": {cid: i for i, cid in enumerate(THING_IDS)},
        "base_classes": list(BASE_CLASSES),
        "novel_classes": list(NOVEL_CLASSES),
    }


def load_synthetic_panoptic(
    panoptic_json: str, image_root: str, panoptic_root: str, semseg_root: str
) -> List[dict]:
    """Mask2Former-style panoptic records of one split (contiguous id = ``category_id - 1``).

    Own loader, not Detectron2's ``load_coco_panoptic_json``: that one names every image
    ``<annotation>.jpg``, and the synthetic images are PNG files.

    Args:
        panoptic_json (str): ``annotations/panoptic_{split}.json``.
        image_root, panoptic_root, semseg_root (str): folders of images, panoptic PNGs and
            semantic PNGs (all files named like the image).

    Returns:
        list[dict]: Detectron2 dataset dicts.
    """
    with open(panoptic_json) as f:
        data = json.load(f)
    images = {im["id"]: im for im in data["images"]}
    thing_ids = set(THING_IDS)
    records = []
    for ann in data["annotations"]:
        im = images[ann["image_id"]]
        segments = [
            {"id": s["id"], "category_id": s["category_id"] - 1,
             "isthing": s["category_id"] in thing_ids, "iscrowd": s["iscrowd"],
             "bbox": s["bbox"], "area": s["area"]}
            for s in ann["segments_info"]
        ]
        records.append({
            "file_name": os.path.join(image_root, im["file_name"]),
            "image_id": im["id"],
            "height": im["height"],
            "width": im["width"],
            "pan_seg_file_name": os.path.join(panoptic_root, ann["file_name"]),
            "sem_seg_file_name": os.path.join(semseg_root, ann["file_name"]),
            "segments_info": segments,
        })
    return records


def load_synthetic_captions(captions_json: str, image_root: str) -> List[dict]:
    """Caption records ``file_name, image_id, height, width, caption`` (one per caption)."""
    with open(captions_json) as f:
        data = json.load(f)
    images = {im["id"]: im for im in data["images"]}
    return [
        {"file_name": os.path.join(image_root, images[a["image_id"]]["file_name"]),
         "image_id": a["image_id"], "height": images[a["image_id"]]["height"],
         "width": images[a["image_id"]]["width"], "caption": a["caption"]}
        for a in data["annotations"]
    ]


def register_synthetic(root: str, prefix: str = "synth") -> Dict[str, str]:
    """Register the synthetic world's datasets under ``root`` (the datasets root); no disk access.

    Args:
        root (str): datasets root; the world is expected in ``root/synthetic``.
        prefix (str): name prefix (tests use unique prefixes for worlds in temporary folders).
            Registering a prefix again replaces its datasets (e.g. to point them at a new root).

    Returns:
        dict[str, str]: :func:`clipself.synthetic.world_paths` of ``root``.
    """
    p = world_paths(root)
    common = _common_metadata()
    all_classes = list(ALL_CLASSES)
    for split in SPLITS:
        images, pan_root, sem_root = (p[f"{split}_images"], p[f"{split}_panoptic"],
                                      p[f"{split}_semseg"])
        # novel things are void in the training maps (see clipself.synthetic.writer)
        seen = ({"seen_classes": [n for n in all_classes if n not in NOVEL_CLASSES]}
                if split == "train" else {})

        name = f"{prefix}_ovd_{split}"
        json_file = p[f"instances_{split}"]

        def _load_det(json_file=json_file, images=images, name=name):
            return load_coco_json(_require(json_file, root), _require(images, root), name)

        _register(name, _load_det, json_file=json_file, image_root=images,
                  evaluator_type="coco", **common)

        name = f"{prefix}_panoptic_{split}"
        pan_json = p[f"panoptic_{split}"]

        def _load_pan(pan_json=pan_json, images=images, pan_root=pan_root, sem_root=sem_root):
            return load_synthetic_panoptic(
                _require(pan_json, root), _require(images, root), _require(pan_root, root),
                _require(sem_root, root))

        _register(
            name, _load_pan, stuff_classes=all_classes,
            stuff_dataset_id_to_contiguous_id={i + 1: i for i in range(len(all_classes))},
            image_root=images, panoptic_root=pan_root, panoptic_json=pan_json,
            sem_seg_root=sem_root, json_file=p[f"instances_{split}_all"],
            label_divisor=PANOPTIC_LABEL_DIVISOR, ignore_label=IGNORE_LABEL,
            evaluator_type="coco_panoptic_seg", **seen, **common)

        name = f"{prefix}_sem_seg_{split}"

        def _load_sem(images=images, sem_root=sem_root):
            return load_sem_seg(_require(sem_root, root), _require(images, root),
                                gt_ext="png", image_ext="png")

        _register(
            name, _load_sem, stuff_classes=all_classes, image_root=images, sem_seg_root=sem_root,
            ignore_label=IGNORE_LABEL, evaluator_type="sem_seg", **seen,
            base_classes=common["base_classes"], novel_classes=common["novel_classes"])

        name = f"{prefix}_captions_{split}"
        cap_json = p[f"captions_{split}"]

        def _load_cap(cap_json=cap_json, images=images):
            return load_synthetic_captions(_require(cap_json, root), _require(images, root))

        _register(name, _load_cap, json_file=cap_json, image_root=images, **common)

        # Class-agnostic region proposals for CLIPSelf (docs/distillation.md §3): the boxes of
        # every object, novel ones included, without labels (an oracle stand-in for the authors'
        # proposals).
        name = f"{prefix}_proposals_{split}"
        all_json = p[f"instances_{split}_all"]

        def _load_prop(all_json=all_json, images=images):
            return load_coco_json(_require(all_json, root), _require(images, root))

        _register(name, _load_prop, json_file=all_json, image_root=images)
    return p
