"""Region proposals for CLIPSelf distillation (docs/distillation.md §3) as a Detectron2 dataset.

``coco/annotations/coco_proposals.json`` (a COCO-format file; the authors' release is identical
to RegionCLIP's ``coco_pseudo_4764.json``; categories are ignored) over ``coco/train2017``. Its
records' ``annotations`` are the proposals that :class:`CLIPSelfMapper` (``region_source=
"proposals"``) samples from.
"""
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .paths import require_path

__all__ = ["register_clipself_proposals"]

_HOW = (
    "Download the authors' coco_proposals.json (see datasets/README.md, 'CLIPSelf proposals') "
    "or write any COCO-format proposals file there."
)


logger = logging.getLogger(__name__)


def _load(json_file: str, image_root: str):
    require_path(json_file, _HOW)
    require_path(image_root, "Download COCO train2017 images (datasets/README.md).")
    records = load_coco_json(json_file, image_root)
    empty = sum(1 for r in records if not r.get("annotations"))
    if empty:
        logger.warning(f"{json_file}: {empty} of {len(records)} images have no proposals; "
                       "CLIPSelfMapper distils one dummy box (0, 0, W/4, H/4) "
                       "for each of them")
    return records


def register_clipself_proposals(root: str, name: str = "coco_2017_train_clipself_proposals"):
    """Register ``name`` = COCO train2017 images with the CLIPSelf proposals as annotations."""
    json_file = os.path.join(root, "coco", "annotations", "coco_proposals.json")
    image_root = os.path.join(root, "coco", "train2017")
    DatasetCatalog.register(name, lambda: _load(json_file, image_root))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root)
