"""ADE20K SceneParsing-150 (ADEChallengeData2016): semantic, panoptic and instance segmentation.

Registered datasets (all under ``ADEChallengeData2016/``):

- ``ade20k_sem_seg_{train,val}``: Detectron2 registers these itself (``annotations_detectron2``
  layout, the one used here), so they are reused; :func:`register_ade20k_sem_seg` registers the same
  thing under another name or root.
- ``ade20k_panoptic_{train,val}``: panoptic PNG + json (``prepare_ade20k_pan_seg.py``) with
  ``sem_seg_file_name`` from ``annotations_detectron2`` (``prepare_ade20k_sem_seg.py``); metadata as
  COCO panoptic with 150 classes of which 100 are things, ``evaluator_type="ade20k_panoptic_seg"``.
- ``ade20k_instance_{train,val}``: COCO-format instances of the 100 thing classes
  (``prepare_ade20k_ins_seg.py``).

Category id convention (the same in every json written here): the 0-based index in the 150-class
list below, i.e. the semantic label of ``annotations/`` minus one.
"""
import functools
import json
import os
import re
from typing import Callable, Dict, Iterator, Optional

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import load_sem_seg

from .coco_format import load_coco_json_with_id_map
from .coco_panoptic import load_panoptic_with_sem_seg
from .paths import require_path

__all__ = [
    "ADE20K_150_CATEGORIES",
    "ADE20K_150_CLASSES",
    "ADE20K_150_THING_IDS",
    "ADE20K_SPLITS",
    "ADE20K_INSTANCE_CATID_MAPPING",
    "ADE20K_INSTANCE_IMG_CAT_IDS",
    "ade20k_colors",
    "ade20k_image_id",
    "default_instance_catid_mapping",
    "read_instance_catid_mapping",
    "resolve_instance_catid_mapping",
    "instances_from_png",
    "get_ade20k_panoptic_metadata",
    "get_ade20k_instance_metadata",
    "register_ade20k_sem_seg",
    "register_ade20k_panoptic",
    "register_ade20k_instance",
    "register_all_ade20k",
]

# (name, isthing) in objectInfo150 order: semantic label i + 1 in ``annotations/*.png`` is entry i.
# The 100 things are the classes of the ADE20K instance-segmentation challenge.
ADE20K_150_CATEGORIES = (
    ("wall", 0),
    ("building, edifice", 0),
    ("sky", 0),
    ("floor, flooring", 0),
    ("tree", 0),
    ("ceiling", 0),
    ("road, route", 0),
    ("bed", 1),
    ("windowpane, window", 1),
    ("grass", 0),
    ("cabinet", 1),
    ("sidewalk, pavement", 0),
    ("person, individual, someone, somebody, mortal, soul", 1),
    ("earth, ground", 0),
    ("door, double door", 1),
    ("table", 1),
    ("mountain, mount", 0),
    ("plant, flora, plant life", 0),
    ("curtain, drape, drapery, mantle, pall", 1),
    ("chair", 1),
    ("car, auto, automobile, machine, motorcar", 1),
    ("water", 0),
    ("painting, picture", 1),
    ("sofa, couch, lounge", 1),
    ("shelf", 1),
    ("house", 0),
    ("sea", 0),
    ("mirror", 1),
    ("rug, carpet, carpeting", 0),
    ("field", 0),
    ("armchair", 1),
    ("seat", 1),
    ("fence, fencing", 1),
    ("desk", 1),
    ("rock, stone", 0),
    ("wardrobe, closet, press", 1),
    ("lamp", 1),
    ("bathtub, bathing tub, bath, tub", 1),
    ("railing, rail", 1),
    ("cushion", 1),
    ("base, pedestal, stand", 0),
    ("box", 1),
    ("column, pillar", 1),
    ("signboard, sign", 1),
    ("chest of drawers, chest, bureau, dresser", 1),
    ("counter", 1),
    ("sand", 0),
    ("sink", 1),
    ("skyscraper", 0),
    ("fireplace, hearth, open fireplace", 1),
    ("refrigerator, icebox", 1),
    ("grandstand, covered stand", 0),
    ("path", 0),
    ("stairs, steps", 1),
    ("runway", 0),
    ("case, display case, showcase, vitrine", 1),
    ("pool table, billiard table, snooker table", 1),
    ("pillow", 1),
    ("screen door, screen", 1),
    ("stairway, staircase", 0),
    ("river", 0),
    ("bridge, span", 0),
    ("bookcase", 1),
    ("blind, screen", 0),
    ("coffee table, cocktail table", 1),
    ("toilet, can, commode, crapper, pot, potty, stool, throne", 1),
    ("flower", 1),
    ("book", 1),
    ("hill", 0),
    ("bench", 1),
    ("countertop", 1),
    ("stove, kitchen stove, range, kitchen range, cooking stove", 1),
    ("palm, palm tree", 1),
    ("kitchen island", 1),
    ("computer, computing machine, computing device, data processor, electronic computer, "
     "information processing system", 1),
    ("swivel chair", 1),
    ("boat", 1),
    ("bar", 0),
    ("arcade machine", 1),
    ("hovel, hut, hutch, shack, shanty", 0),
    ("bus, autobus, coach, charabanc, double-decker, jitney, motorbus, motorcoach, omnibus, "
     "passenger vehicle", 1),
    ("towel", 1),
    ("light, light source", 1),
    ("truck, motortruck", 1),
    ("tower", 0),
    ("chandelier, pendant, pendent", 1),
    ("awning, sunshade, sunblind", 1),
    ("streetlight, street lamp", 1),
    ("booth, cubicle, stall, kiosk", 1),
    ("television receiver, television, television set, tv, tv set, idiot box, boob tube, "
     "telly, goggle box", 1),
    ("airplane, aeroplane, plane", 1),
    ("dirt track", 0),
    ("apparel, wearing apparel, dress, clothes", 1),
    ("pole", 1),
    ("land, ground, soil", 0),
    ("bannister, banister, balustrade, balusters, handrail", 1),
    ("escalator, moving staircase, moving stairway", 0),
    ("ottoman, pouf, pouffe, puff, hassock", 1),
    ("bottle", 1),
    ("buffet, counter, sideboard", 0),
    ("poster, posting, placard, notice, bill, card", 0),
    ("stage", 0),
    ("van", 1),
    ("ship", 1),
    ("fountain", 1),
    ("conveyer belt, conveyor belt, conveyer, conveyor, transporter", 0),
    ("canopy", 0),
    ("washer, automatic washer, washing machine", 1),
    ("plaything, toy", 1),
    ("swimming pool, swimming bath, natatorium", 0),
    ("stool", 1),
    ("barrel, cask", 1),
    ("basket, handbasket", 1),
    ("waterfall, falls", 0),
    ("tent, collapsible shelter", 0),
    ("bag", 1),
    ("minibike, motorbike", 1),
    ("cradle", 0),
    ("oven", 1),
    ("ball", 1),
    ("food, solid food", 1),
    ("step, stair", 1),
    ("tank, storage tank", 0),
    ("trade name, brand name, brand, marque", 1),
    ("microwave, microwave oven", 1),
    ("pot, flowerpot", 1),
    ("animal, animate being, beast, brute, creature, fauna", 1),
    ("bicycle, bike, wheel, cycle", 1),
    ("lake", 0),
    ("dishwasher, dish washer, dishwashing machine", 1),
    ("screen, silver screen, projection screen", 1),
    ("blanket, cover", 0),
    ("sculpture", 1),
    ("hood, exhaust hood", 1),
    ("sconce", 1),
    ("vase", 1),
    ("traffic light, traffic signal, stoplight", 1),
    ("tray", 1),
    ("ashcan, trash can, garbage can, wastebin, ash bin, ash-bin, ashbin, dustbin, "
     "trash barrel, trash bin", 1),
    ("fan", 1),
    ("pier, wharf, wharfage, dock", 0),
    ("crt screen", 0),
    ("plate", 1),
    ("monitor, monitoring device", 1),
    ("bulletin board, notice board", 1),
    ("shower", 0),
    ("radiator", 1),
    ("glass, drinking glass", 1),
    ("clock", 1),
    ("flag", 1),
)
ADE20K_150_CLASSES = tuple(name for name, _ in ADE20K_150_CATEGORIES)
# Category ids (0-based semantic indices) of the 100 thing classes, ascending.
ADE20K_150_THING_IDS = tuple(i for i, (_, isthing) in enumerate(ADE20K_150_CATEGORIES) if isthing)

# split -> folders and files relative to the datasets root.
ADE20K_SPLITS = {
    split: {
        "image_root": f"ADEChallengeData2016/images/{dirname}",
        "raw_sem_seg_root": f"ADEChallengeData2016/annotations/{dirname}",
        "instance_png_root": f"ADEChallengeData2016/annotations_instance/{dirname}",
        "sem_seg_root": f"ADEChallengeData2016/annotations_detectron2/{dirname}",
        "panoptic_root": f"ADEChallengeData2016/ade20k_panoptic_{split}",
        "panoptic_json": f"ADEChallengeData2016/ade20k_panoptic_{split}.json",
        "json_file": f"ADEChallengeData2016/ade20k_instance_{split}.json",
    }
    for split, dirname in (("train", "training"), ("val", "validation"))
}
# The two files of the ADE20K instance challenge that relate its 100 class ids to the 150.
ADE20K_INSTANCE_CATID_MAPPING = "ADEChallengeData2016/ade20k_instance_catid_mapping.txt"
ADE20K_INSTANCE_IMG_CAT_IDS = "ADEChallengeData2016/ade20k_instance_imgCatIds.json"

_GET_ADE = "Download ADEChallengeData2016 (see datasets/README.md)."
_PREPARE = {
    "sem_seg_root": "Create it with: python datasets/prepare_ade20k_sem_seg.py",
    "panoptic": "Create it with: python datasets/prepare_ade20k_pan_seg.py",
    "json_file": "Create it with: python datasets/prepare_ade20k_ins_seg.py",
}


def ade20k_colors() -> list:
    """150 distinct, non-black RGB colours (deterministic), one per class."""
    rng = np.random.RandomState(150)
    colors, seen = [], {(0, 0, 0)}
    while len(colors) < len(ADE20K_150_CATEGORIES):
        color = tuple(int(v) for v in rng.randint(16, 256, size=3))
        if color not in seen:
            seen.add(color)
            colors.append(list(color))
    return colors


def ade20k_image_id(file_name: str, index: int) -> int:
    """Integer image id shared by the panoptic and instance json files of one split.

    The trailing number of the name (``ADE_val_00000012.png`` -> 12), else ``index`` (the
    position in the sorted file list).
    """
    match = re.search(r"(\d+)$", os.path.splitext(os.path.basename(file_name))[0])
    return int(match.group(1)) if match else index


def default_instance_catid_mapping() -> Dict[int, int]:
    """Instance-challenge class id (1..100) -> category id (0..149), assuming ascending order.

    The challenge numbers its 100 classes in the order of their SceneParsing-150 label; this is
    used only when ``ade20k_instance_catid_mapping.txt`` is not available.
    """
    return {k + 1: cat_id for k, cat_id in enumerate(ADE20K_150_THING_IDS)}


def read_instance_catid_mapping(path: str) -> Dict[int, int]:
    """Read the instance challenge's category mapping file.

    Each data line is ``<instance id 1..100> <SceneParsing150 label 1..150> [...]``; other lines
    (the header) are skipped.

    Returns:
        dict[int, int]: instance class id -> category id (0-based semantic index).
    """
    mapping = {}
    with open(path) as f:
        for line in f:
            tokens = line.split()
            if len(tokens) < 2 or not (tokens[0].isdigit() and tokens[1].isdigit()):
                continue
            mapping[int(tokens[0])] = int(tokens[1]) - 1
    not_things = sorted(set(mapping.values()) - set(ADE20K_150_THING_IDS))
    if not mapping or not_things:
        raise ValueError(f"{path}: expected lines '<instance id> <ADE-150 label>' mapping onto "
                         f"the 100 thing classes; got non-thing labels {not_things}")
    return mapping


def resolve_instance_catid_mapping(mapping_file: str, img_cat_ids_file: Optional[str] = None,
                                   required: bool = False, log: Callable = print) -> Dict[int, int]:
    """The instance-class mapping used by the ADE20K prepare scripts.

    Args:
        mapping_file (str): ``ade20k_instance_catid_mapping.txt``. When it does not exist, the
            ascending mapping of :func:`default_instance_catid_mapping` is used, unless
            ``required`` (then FileNotFoundError).
        img_cat_ids_file (str or None): ``ade20k_instance_imgCatIds.json``; when it exists, its
            ``categories`` ids must all be mapped.
        required (bool): whether ``mapping_file`` must exist (it was named by the user).
        log (callable): progress printer.

    Returns:
        dict[int, int]: instance class id (R channel of the instance PNGs) -> category id 0..149.
    """
    if required:
        require_path(mapping_file, "Pass the instance challenge's category mapping file.")
    if os.path.exists(mapping_file):
        mapping = read_instance_catid_mapping(mapping_file)
        log(f"read {len(mapping)} instance classes from {mapping_file}")
    else:
        mapping = default_instance_catid_mapping()
        log(f"{mapping_file} not found: assuming instance class k is the k-th thing class in "
            "SceneParsing-150 order")
    if img_cat_ids_file and os.path.exists(img_cat_ids_file):
        with open(img_cat_ids_file) as f:
            ids = {int(c["id"]) for c in json.load(f).get("categories", [])}
        unmapped = sorted(ids - set(mapping))
        if unmapped:
            raise ValueError(f"{img_cat_ids_file} lists instance classes {unmapped} that the "
                             f"category mapping does not map")
    return mapping


def instances_from_png(instance_rgb: np.ndarray, mapping: Dict[int, int]) -> Iterator:
    """Split an ADE20K instance PNG into (category id, mask) pairs.

    Args:
        instance_rgb (ndarray): (H, W, 3) uint8, R = instance class id (1..100, 0 = none),
            G = instance id (1..255, 0 = none).
        mapping (dict[int, int]): instance class id -> category id 0..149.

    Yields:
        (int, ndarray): category id and (H, W) bool mask, ordered by (class id, instance id).
    """
    cls = instance_rgb[..., 0].astype(np.int64)
    ins = instance_rgb[..., 1].astype(np.int64)
    keys = np.where((cls > 0) & (ins > 0), cls * 256 + ins, 0)
    for key in np.unique(keys):
        if key == 0:
            continue
        class_id = int(key) // 256
        if class_id not in mapping:
            raise ValueError(f"instance class {class_id} is not in the category mapping")
        yield mapping[class_id], keys == key


def get_ade20k_panoptic_metadata() -> dict:
    """Class metadata of ADE20K-150 panoptic (dataset ids = contiguous ids = 0..149).

    Returns:
        dict: ``thing_classes`` (100), ``thing_colors``, ``stuff_classes`` (all 150),
        ``stuff_colors``, ``thing_dataset_id_to_contiguous_id`` (thing id -> index among the 150),
        ``stuff_dataset_id_to_contiguous_id`` (identity over the 150).
    """
    colors = ade20k_colors()
    return {
        "thing_classes": [ADE20K_150_CLASSES[i] for i in ADE20K_150_THING_IDS],
        "thing_colors": [colors[i] for i in ADE20K_150_THING_IDS],
        "stuff_classes": list(ADE20K_150_CLASSES),
        "stuff_colors": colors,
        "thing_dataset_id_to_contiguous_id": {i: i for i in ADE20K_150_THING_IDS},
        "stuff_dataset_id_to_contiguous_id": {i: i for i in range(len(ADE20K_150_CLASSES))},
    }


def get_ade20k_instance_metadata() -> dict:
    """Class metadata of ADE20K-150 instances: the 100 things, contiguous ids 0..99.

    Returns:
        dict: ``thing_classes`` (100), ``thing_colors``, ``thing_dataset_id_to_contiguous_id``
        (category id 0..149 of a thing -> 0..99).
    """
    colors = ade20k_colors()
    return {
        "thing_classes": [ADE20K_150_CLASSES[i] for i in ADE20K_150_THING_IDS],
        "thing_colors": [colors[i] for i in ADE20K_150_THING_IDS],
        "thing_dataset_id_to_contiguous_id": {i: k for k, i in enumerate(ADE20K_150_THING_IDS)},
    }


def _load_ade20k_sem_seg(sem_seg_root: str, image_root: str) -> list:
    require_path(image_root, _GET_ADE)
    require_path(sem_seg_root, _PREPARE["sem_seg_root"])
    return load_sem_seg(sem_seg_root, image_root, gt_ext="png", image_ext="jpg")


def register_ade20k_sem_seg(root: str, prefix: str = "ade20k_sem_seg") -> None:
    """Register ``{prefix}_{train,val}``: 150-class semantic maps, 255 = ignore (no disk access).

    Detectron2 already registers ``ade20k_sem_seg_{train,val}`` with this layout (and its own short
    class names); use this for another root or name.
    """
    for split, rel in ADE20K_SPLITS.items():
        name = f"{prefix}_{split}"
        image_root = os.path.join(root, rel["image_root"])
        sem_seg_root = os.path.join(root, rel["sem_seg_root"])
        DatasetCatalog.register(
            name, functools.partial(_load_ade20k_sem_seg, sem_seg_root, image_root)
        )
        MetadataCatalog.get(name).set(
            stuff_classes=list(ADE20K_150_CLASSES), stuff_colors=ade20k_colors(),
            image_root=image_root, sem_seg_root=sem_seg_root,
            evaluator_type="sem_seg", ignore_label=255,
        )


def register_ade20k_panoptic(root: str, prefix: str = "ade20k_panoptic") -> None:
    """Register ``{prefix}_{train,val}`` rooted at ``root`` (no disk access).

    Records and metadata keys are those of ``coco_2017_*_panoptic_with_sem_seg``.
    """
    meta = get_ade20k_panoptic_metadata()
    for split, rel in ADE20K_SPLITS.items():
        name = f"{prefix}_{split}"
        paths = {key: os.path.join(root, rel[key]) for key in (
            "image_root", "panoptic_root", "panoptic_json", "sem_seg_root", "json_file")}
        DatasetCatalog.register(name, functools.partial(
            load_panoptic_with_sem_seg, paths["panoptic_json"], paths["image_root"],
            paths["panoptic_root"], paths["sem_seg_root"],
            meta["thing_dataset_id_to_contiguous_id"], meta["stuff_dataset_id_to_contiguous_id"],
            f"{_PREPARE['panoptic']} (needs {_GET_ADE[:-1]})", _PREPARE["sem_seg_root"],
        ))
        MetadataCatalog.get(name).set(
            **paths,
            evaluator_type="ade20k_panoptic_seg",
            ignore_label=255,
            label_divisor=1000,
            **meta,
        )


def register_ade20k_instance(root: str, prefix: str = "ade20k_instance") -> None:
    """Register ``{prefix}_{train,val}`` (COCO-format instances, 100 classes) (no disk access)."""
    meta = get_ade20k_instance_metadata()
    for split, rel in ADE20K_SPLITS.items():
        name = f"{prefix}_{split}"
        image_root = os.path.join(root, rel["image_root"])
        json_file = os.path.join(root, rel["json_file"])
        DatasetCatalog.register(name, functools.partial(
            load_coco_json_with_id_map, json_file, image_root,
            meta["thing_dataset_id_to_contiguous_id"], _PREPARE["json_file"], _GET_ADE,
        ))
        MetadataCatalog.get(name).set(
            json_file=json_file, image_root=image_root, evaluator_type="coco", **meta
        )


def register_all_ade20k(root: str) -> None:
    """Register the ADE20K-150 panoptic and instance datasets, and the semantic ones unless
    Detectron2 already did (its ``ade20k_sem_seg_*`` use the same ``annotations_detectron2``)."""
    if "ade20k_sem_seg_train" not in DatasetCatalog.list():
        register_ade20k_sem_seg(root)
    register_ade20k_panoptic(root)
    register_ade20k_instance(root)
