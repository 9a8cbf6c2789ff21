"""The semantic-segmentation benchmarks of CAT-Seg (CLIPSelf Table 4), Detectron2 style.

Registered datasets (label folders relative to the datasets root, written by datasets/prepare_*):

- ``coco_2017_{train,val}_stuff_sem_seg``: COCO-Stuff-171, images ``coco/{train,val}2017``,
  labels ``coco/stuffthingmaps_detectron2/{train,val}2017/*.png`` (uint8), ignore 255.
- ``ade20k_full_sem_seg_{train,val}``: ADE-847, images and labels
  ``ADE20K_2021_17_01/{images,annotations}_detectron2/{training,validation}/`` (``*.jpg``,
  ``*.tif`` uint16), ignore 65535.
- ``context_59_val_sem_seg``: PASCAL-Context-59, images ``VOCdevkit/VOC2010/JPEGImages``,
  labels ``VOCdevkit/VOC2010/annotations_detectron2/pc59_val/*.png`` (uint8), ignore 255.
- ``context_459_val_sem_seg``: PASCAL-Context-459, labels ``.../pc459_val/*.tif`` (uint16),
  ignore 459.
- ``voc_2012_val_sem_seg``: VOC-20 (background ignored), images ``VOCdevkit/VOC2012/JPEGImages``,
  labels ``VOCdevkit/VOC2012/annotations_detectron2/val/*.png``, ignore 255.
- ``voc_2012_val_background_sem_seg``: VOC-21 (background = class 20), labels
  ``VOCdevkit/VOC2012/annotations_detectron2_bg/val/*.png``, ignore 255.

Every dataset has the metadata ``stuff_classes`` (class index = label value), ``ignore_label``,
``evaluator_type`` (``"sem_seg"``; ``"sem_seg_background"`` for the 21-class VOC, whose last class
is the background, see :class:`clipself.evaluation.VOCbEvaluator`), ``image_root`` and
``sem_seg_root``. Records are ``{"file_name", "sem_seg_file_name"}``.

The ADE-847 and PASCAL-Context-459 class names are not shipped: the prepare scripts write them
(``ADE20K_2021_17_01/ade847_classes.json``, ``VOCdevkit/VOC2010/pc459_classes.json``) and
``stuff_classes`` reads them when first accessed.

Registration touches no file; a missing folder or class file raises ``FileNotFoundError`` naming it
and the command that creates it when the dataset (or its ``stuff_classes``) is first used.
"""
import functools
import json
import os
import re
from typing import Dict, List, Sequence

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.data.datasets import load_sem_seg
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as _VOC_CLASS_NAMES

from .paths import require_path

__all__ = [
    "COCO_STUFF_91_CLASSES",
    "COCO_STUFF_171_CLASSES",
    "COCO_STUFF_171_IDS",
    "PASCAL_CONTEXT_59_CLASSES",
    "PC459_IGNORE_LABEL",
    "ADE847_IGNORE_LABEL",
    "VOC_20_CLASSES",
    "VOC_21_CLASSES",
    "SEM_SEG_LAYOUT",
    "GET_PASCAL_CONTEXT",
    "read_class_names",
    "read_pascal_context_labels",
    "read_pascal_context_label_map",
    "read_image_list",
    "load_sem_seg_by_gt",
    "register_sem_seg_benchmarks",
]

# The 91 stuff classes of COCO-Stuff (labels.txt ids 92..182), in id order.
COCO_STUFF_91_CLASSES = (
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage",
    "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds",
    "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble",
    "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other",
    "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves",
    "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper",
    "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing",
    "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf",
    "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw",
    "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable",
    "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)
_COCO_THINGS = [c for c in COCO_CATEGORIES if c["isthing"] == 1]
#: COCO-Stuff-171 in trainId order: the 80 COCO things (COCO id order), then the 91 stuff classes.
COCO_STUFF_171_CLASSES = tuple(c["name"] for c in _COCO_THINGS) + COCO_STUFF_91_CLASSES
#: COCO(-Stuff) category id of each trainId; the stuffthingmaps store ``id - 1`` (255 = unlabeled).
COCO_STUFF_171_IDS = tuple(c["id"] for c in _COCO_THINGS) + tuple(range(92, 183))

#: PASCAL-Context-59 in trainId order (names as spelled in PASCAL-Context's labels.txt).
PASCAL_CONTEXT_59_CLASSES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle",
    "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow",
    "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food", "grass", "ground",
    "horse", "keyboard", "light", "motorbike", "mountain", "mouse", "person", "plate",
    "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky",
    "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water",
    "window", "wood",
)
#: PASCAL-Context-459 labels are ``LabelMap - 1`` (0..458); unlabelled pixels (LabelMap 0) -> 459.
PC459_IGNORE_LABEL = 459
#: ADE-847 labels are uint16 trainIds; unlabelled and non-selected classes -> 65535.
ADE847_IGNORE_LABEL = 65535
#: The 20 PASCAL VOC classes (Detectron2's spelling); label 0..19 = VOC index 1..20.
VOC_20_CLASSES = tuple(_VOC_CLASS_NAMES)
#: VOC with background, which is the last class (label 20).
VOC_21_CLASSES = VOC_20_CLASSES + ("background",)

_GET = {
    "coco": "Download COCO 2017 images and COCO-Stuff stuffthingmaps_trainval2017.zip "
            "(see datasets/README.md).",
    "ade_full": "Download ADE20K_2021_17_01 (see datasets/README.md).",
    "voc2010": "Download VOC2010 and PASCAL-Context trainval.tar.gz (see datasets/README.md).",
    "voc2012": "Download VOC2012 (see datasets/README.md).",
}
#: how to get PASCAL-Context's files (messages of missing-file errors)
GET_PASCAL_CONTEXT = (
    "Download VOCtrainval_03-May-2010.tar (VOC2010) and PASCAL-Context's trainval.tar.gz; "
    "extract the latter (trainval/*.mat, labels.txt) into VOCdevkit/VOC2010/."
)
_PREPARE = "Create it with: python datasets/{}.py"

# name -> layout relative to the datasets root and how to get the files. ``classes`` is a tuple
# of names or the relative path of a json written by the prepare script.
SEM_SEG_LAYOUT: Dict[str, dict] = {}
for _split in ("train", "val"):
    SEM_SEG_LAYOUT[f"coco_2017_{_split}_stuff_sem_seg"] = dict(
        image_root=f"coco/{_split}2017",
        sem_seg_root=f"coco/stuffthingmaps_detectron2/{_split}2017",
        gt_ext="png", image_ext="jpg", classes=COCO_STUFF_171_CLASSES, ignore_label=255,
        evaluator_type="sem_seg", get="coco", prepare="prepare_coco_stuff", pair_by_gt=False,
    )
for _split, _dirname in (("train", "training"), ("val", "validation")):
    SEM_SEG_LAYOUT[f"ade20k_full_sem_seg_{_split}"] = dict(
        image_root=f"ADE20K_2021_17_01/images_detectron2/{_dirname}",
        sem_seg_root=f"ADE20K_2021_17_01/annotations_detectron2/{_dirname}",
        gt_ext="tif", image_ext="jpg", classes="ADE20K_2021_17_01/ade847_classes.json",
        ignore_label=ADE847_IGNORE_LABEL, evaluator_type="sem_seg", get="ade_full",
        prepare="prepare_ade20k_full_sem_seg", pair_by_gt=False,
    )
SEM_SEG_LAYOUT["context_59_val_sem_seg"] = dict(
    image_root="VOCdevkit/VOC2010/JPEGImages",
    sem_seg_root="VOCdevkit/VOC2010/annotations_detectron2/pc59_val",
    gt_ext="png", image_ext="jpg", classes=PASCAL_CONTEXT_59_CLASSES, ignore_label=255,
    evaluator_type="sem_seg", get="voc2010", prepare="prepare_pascal_context_59", pair_by_gt=True,
)
SEM_SEG_LAYOUT["context_459_val_sem_seg"] = dict(
    image_root="VOCdevkit/VOC2010/JPEGImages",
    sem_seg_root="VOCdevkit/VOC2010/annotations_detectron2/pc459_val",
    gt_ext="tif", image_ext="jpg", classes="VOCdevkit/VOC2010/pc459_classes.json",
    ignore_label=PC459_IGNORE_LABEL, evaluator_type="sem_seg", get="voc2010",
    prepare="prepare_pascal_context_459", pair_by_gt=True,
)
SEM_SEG_LAYOUT["voc_2012_val_sem_seg"] = dict(
    image_root="VOCdevkit/VOC2012/JPEGImages",
    sem_seg_root="VOCdevkit/VOC2012/annotations_detectron2/val",
    gt_ext="png", image_ext="jpg", classes=VOC_20_CLASSES, ignore_label=255,
    evaluator_type="sem_seg", get="voc2012", prepare="prepare_voc_sem_seg", pair_by_gt=True,
)
SEM_SEG_LAYOUT["voc_2012_val_background_sem_seg"] = dict(
    image_root="VOCdevkit/VOC2012/JPEGImages",
    sem_seg_root="VOCdevkit/VOC2012/annotations_detectron2_bg/val",
    gt_ext="png", image_ext="jpg", classes=VOC_21_CLASSES, ignore_label=255,
    evaluator_type="sem_seg_background", get="voc2012", prepare="prepare_voc_sem_seg",
    pair_by_gt=True,
)


def read_class_names(path: str, how_to_make: str) -> List[str]:
    """Class names (index = label value) from a json list of names or of ``{"name": ...}``."""
    require_path(path, how_to_make)
    with open(path) as f:
        entries = json.load(f)
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty json list of names or of {{'name': ...}}")
    return [e["name"] if isinstance(e, dict) else str(e) for e in entries]


def read_pascal_context_labels(path: str) -> Dict[int, str]:
    """Parse PASCAL-Context's ``labels.txt`` (one ``<id>: <name>`` per line) into ``{id: name}``."""
    labels = {}
    with open(path) as f:
        for line in f:
            match = re.match(r"^\s*(\d+)\s*:\s*(.+?)\s*$", line)
            if match:
                labels[int(match.group(1))] = match.group(2)
    if not labels:
        raise ValueError(f"{path}: no '<id>: <name>' lines")
    return labels


def read_pascal_context_label_map(path: str, how_to_get: str) -> np.ndarray:
    """The ``LabelMap`` (H, W) of one PASCAL-Context ``trainval/<id>.mat`` as int64
    (0 = unlabelled, k = class k of labels.txt)."""
    import scipy.io

    require_path(path, how_to_get)
    mat = scipy.io.loadmat(path)
    if "LabelMap" not in mat:
        raise KeyError(f"{path} has no 'LabelMap' (keys: {sorted(k for k in mat if k[0] != '_')})")
    return np.asarray(mat["LabelMap"]).astype(np.int64)


def read_image_list(path: str, how_to_get: str) -> List[str]:
    """Image ids (first token of each non-empty line) of a VOC-style split file."""
    require_path(path, how_to_get)
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def load_sem_seg_by_gt(gt_root: str, image_root: str, gt_ext: str = "png",
                       image_ext: str = "jpg") -> List[dict]:
    """Records for every label file in ``gt_root``, images looked up by name in ``image_root``.

    Unlike ``load_sem_seg`` this suits an image folder holding more images than the split
    (VOC's ``JPEGImages``); every label must have its image.
    """
    names = sorted(f[: -len(gt_ext) - 1] for f in os.listdir(gt_root) if f.endswith("." + gt_ext))
    if not names:
        raise FileNotFoundError(f"No *.{gt_ext} label files in {gt_root}")
    records = [{"file_name": os.path.join(image_root, f"{n}.{image_ext}"),
                "sem_seg_file_name": os.path.join(gt_root, f"{n}.{gt_ext}")} for n in names]
    missing = [r["file_name"] for r in records if not os.path.exists(r["file_name"])]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images of the labels in {gt_root} are missing, "
                                f"e.g. {missing[0]}")
    return records


def _load(image_root: str, sem_seg_root: str, gt_ext: str, image_ext: str, pair_by_gt: bool,
          how_to_get: str, how_to_make: str) -> List[dict]:
    require_path(image_root, how_to_get)
    require_path(sem_seg_root, how_to_make)
    if pair_by_gt:
        return load_sem_seg_by_gt(sem_seg_root, image_root, gt_ext, image_ext)
    return load_sem_seg(sem_seg_root, image_root, gt_ext=gt_ext, image_ext=image_ext)


class _ClassFileMetadata(Metadata):
    """Metadata whose ``stuff_classes`` is read from the json ``classes_file`` when first used
    (``FileNotFoundError`` naming the prepare script if it does not exist yet)."""

    def __getattr__(self, key):
        if key == "stuff_classes" and "classes_file" in self.__dict__:
            names = read_class_names(self.__dict__["classes_file"],
                                     self.__dict__["classes_file_how_to_make"])
            self.__dict__["stuff_classes"] = names
            return names
        return super().__getattr__(key)


def register_sem_seg_benchmarks(root: str, names: Sequence[str] = tuple(SEM_SEG_LAYOUT),
                                prefix: str = "") -> None:
    """Register the benchmarks of :data:`SEM_SEG_LAYOUT` rooted at ``root`` (no disk access).

    Args:
        root (str): datasets root.
        names (list[str]): which of them (default: all).
        prefix (str): prepended to every registered name (tests register private copies).
    """
    for key in names:
        spec = SEM_SEG_LAYOUT[key]
        name = prefix + key
        image_root = os.path.join(root, spec["image_root"])
        sem_seg_root = os.path.join(root, spec["sem_seg_root"])
        how_to_make = _PREPARE.format(spec["prepare"])
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)
        DatasetCatalog.register(name, functools.partial(
            _load, image_root, sem_seg_root, spec["gt_ext"], spec["image_ext"],
            spec["pair_by_gt"], _GET[spec["get"]], how_to_make,
        ))
        metadata = dict(image_root=image_root, sem_seg_root=sem_seg_root,
                        ignore_label=spec["ignore_label"], evaluator_type=spec["evaluator_type"])
        if isinstance(spec["classes"], str):
            MetadataCatalog[name] = _ClassFileMetadata(name=name)
            metadata.update(classes_file=os.path.join(root, spec["classes"]),
                            classes_file_how_to_make=how_to_make)
        else:
            metadata["stuff_classes"] = list(spec["classes"])
        MetadataCatalog.get(name).set(**metadata)
