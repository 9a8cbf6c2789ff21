#!/usr/bin/env python
"""Write ADE20K-full (ADE-847) images and uint16 semantic maps from ADE20K_2021_17_01.

    python datasets/prepare_ade20k_full_sem_seg.py [--root $DETECTRON2_DATASETS]
        [--splits train val] [--categories FILE] [--num-classes 847] [--max-short-side 512]
        [--workers N]

Reads ``ADE20K_2021_17_01/index_ade20k.pkl`` (``filename``, ``folder`` per image and
``objectnames``, the full ADE20K class list) and each image's ``<name>_seg.png`` next to it, whose
pixel class is ``R // 10 * 256 + G`` (0 = unlabelled, v = ``objectnames[v - 1]``; the "ADE
index" below is ``v - 1``). The split of an image is the ``training`` / ``validation`` component
of its folder.

The class list (trainIds 0..K-1) is

- ``--categories FILE``: a json list of names, or of ``{"name": ...}`` (other keys ignored), e.g.
  the 847-name list of your reference implementation. Each name is looked up in ``objectnames``
  (whole name, else its first comma-separated synonym, case-insensitive); a name found several
  times takes all of them; names not found are an error. **Pin this to get the canonical
  ADE-847 list.**
- by default, our approximation of it: the ``--num-classes`` (847) classes present in the most
  training images (counted from the ``*_seg.png`` of the training split, which must be present),
  most frequent first, ties by ADE index. It is not guaranteed to equal the published list.

Writes, under ``ADE20K_2021_17_01/``:

- ``images_detectron2/{training,validation}/<name>.jpg``: the image, resized (bilinear) so that
  its short side is at most ``--max-short-side``; copied unchanged when already small enough;
- ``annotations_detectron2/{training,validation}/<name>.tif``: uint16 trainIds, 65535 for
  unlabelled pixels and classes outside the list, resized with nearest neighbour;
- ``ade847_classes.json``: ``[{"id": ADE index, "name": ...}]`` in trainId order (plus ``ids``
  when a name matched several ADE indices, ``train_image_count`` under the default rule).
  ``ade20k_full_sem_seg_{train,val}`` read their ``stuff_classes`` from it.
"""
import argparse
import functools
import json
import os
import pickle
import shutil

import numpy as np
from PIL import Image

from clipself.data.datasets.paths import require_path
from clipself.data.datasets.prepare_utils import (
    basic_argument_parser,
    parallel_map,
    progress,
    write_json,
)
from clipself.data.datasets.sem_seg_benchmarks import ADE847_IGNORE_LABEL, SEM_SEG_LAYOUT

GET_ADE_FULL = ("Download ADE20K_2021_17_01.zip (https://ade20k.csail.mit.edu/, registration "
                "required) and unzip it into the datasets root.")
ADE_FULL_ROOT = "ADE20K_2021_17_01"
SPLIT_DIRS = {"train": "training", "val": "validation"}


def get_parser() -> argparse.ArgumentParser:
    parser = basic_argument_parser(__doc__.split("\n\n")[0], splits=("train", "val"))
    parser.add_argument("--categories", default=None,
                        help="json list of class names (or of {'name': ...}) in trainId order; "
                             "default: the --num-classes most frequent training classes")
    parser.add_argument("--num-classes", type=int, default=847,
                        help="classes kept by the default frequency rule (default: 847)")
    parser.add_argument("--max-short-side", type=int, default=512,
                        help="resize so that the short side is at most this (default: 512)")
    return parser


def read_index(root: str) -> dict:
    """``index_ade20k.pkl`` with ``filename``, ``folder`` (one per image) and ``objectnames``."""
    path = require_path(os.path.join(root, ADE_FULL_ROOT, "index_ade20k.pkl"), GET_ADE_FULL)
    with open(path, "rb") as f:
        index = pickle.load(f)
    missing = [k for k in ("filename", "folder", "objectnames") if k not in index]
    if missing or len(index["filename"]) != len(index["folder"]):
        raise ValueError(f"{path}: expected 'filename' and 'folder' lists of equal length and "
                         f"'objectnames'; missing {missing}")
    return index


def split_images(index: dict, root: str) -> dict:
    """``{split: [(image path, seg path, output stem)]}`` from the pkl's folders."""
    out = {split: [] for split in SPLIT_DIRS}
    for folder, filename in zip(index["folder"], index["filename"]):
        parts = str(folder).replace("\\", "/").strip("/").split("/")
        split = next((s for s, d in SPLIT_DIRS.items() if d in parts), None)
        if split is None:
            continue
        if parts[0] != ADE_FULL_ROOT:
            parts = [ADE_FULL_ROOT] + parts
        stem = os.path.splitext(str(filename))[0]
        directory = os.path.join(root, *parts)
        out[split].append((os.path.join(directory, str(filename)),
                           os.path.join(directory, stem + "_seg.png"), stem))
    return out


def ade_class_map(seg_rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 ``*_seg.png`` -> (H, W) int64 class value (0 = unlabelled, v >= 1)."""
    r = seg_rgb[..., 0].astype(np.int64)
    g = seg_rgb[..., 1].astype(np.int64)
    return r // 10 * 256 + g


def _read_class_map(seg_path: str) -> np.ndarray:
    require_path(seg_path, GET_ADE_FULL)
    return ade_class_map(np.asarray(Image.open(seg_path).convert("RGB")))


def _present(job) -> np.ndarray:
    """ADE indices present in one image."""
    values = np.unique(_read_class_map(job[1]))
    return values[values > 0] - 1


def count_train_images(jobs: list, num_objects: int, workers: int = 1) -> np.ndarray:
    """Number of images of ``jobs`` whose seg map contains each ADE index, (num_objects,)."""
    counts = np.zeros(num_objects, dtype=np.int64)
    for present in progress(parallel_map(_present, jobs, workers), len(jobs),
                            "[ade-847] counting training images per class"):
        counts[present[present < num_objects]] += 1
    return counts


def most_frequent(counts: np.ndarray, objectnames: list, num_classes: int) -> list:
    """The default rule: ``[{"id", "name", "train_image_count"}]`` of the ``num_classes`` classes
    in the most training images (descending, ties by ADE index; never-seen classes are left out)."""
    order = sorted((i for i in range(len(counts)) if counts[i] > 0), key=lambda i: (-counts[i], i))
    if len(order) < num_classes:
        print(f"note: only {len(order)} classes occur in the training split "
              f"(asked for {num_classes})")
    return [{"id": int(i), "name": str(objectnames[i]), "train_image_count": int(counts[i])}
            for i in order[:num_classes]]


def _norm(name: str) -> str:
    return " ".join(str(name).lower().split())


def match_categories(entries: list, objectnames: list) -> list:
    """``--categories`` entries -> ``[{"id", "name"[, "ids"]}]`` (see the module docstring)."""
    full, first = {}, {}
    for i, name in enumerate(objectnames):
        full.setdefault(_norm(name), []).append(i)
        first.setdefault(_norm(str(name).split(",")[0]), []).append(i)
    classes, missing, owner = [], [], {}
    for entry in entries:
        name = entry["name"] if isinstance(entry, dict) else str(entry)
        ids = full.get(_norm(name)) or first.get(_norm(name.split(",")[0]))
        if not ids:
            missing.append(name)
            continue
        for i in ids:
            if i in owner:
                raise ValueError(f"ADE class {objectnames[i]!r} matches both {owner[i]!r} and "
                                 f"{name!r} of the category list")
            owner[i] = name
        cls = {"id": int(ids[0]), "name": name}
        if len(ids) > 1:
            cls["ids"] = [int(i) for i in ids]
        classes.append(cls)
    if missing:
        raise ValueError(f"{len(missing)} category names are not in objectnames of "
                         f"index_ade20k.pkl, e.g. {missing[:20]}")
    return classes


def class_lut(classes: list, num_objects: int) -> np.ndarray:
    """Look-up table class value v (0..num_objects) -> uint16 trainId, 65535 elsewhere."""
    lut = np.full(num_objects + 1, ADE847_IGNORE_LABEL, dtype=np.uint16)
    for train_id, cls in enumerate(classes):
        for i in cls.get("ids", [cls["id"]]):
            lut[i + 1] = train_id
    return lut


def _convert_one(job, image_dir, label_dir, lut, max_short_side):
    image_path, seg_path, stem = job
    require_path(image_path, GET_ADE_FULL)
    values = _read_class_map(seg_path)
    label = lut[np.where(values < len(lut), values, 0)]
    image = Image.open(image_path)
    if image.size != (label.shape[1], label.shape[0]):
        raise ValueError(f"{image_path} is {image.size}, its seg map {label.shape[::-1]}")
    w, h = image.size
    image_out = os.path.join(image_dir, stem + ".jpg")
    label_img = Image.fromarray(label)
    if min(w, h) > max_short_side:
        scale = max_short_side / min(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image.convert("RGB").resize(size, Image.BILINEAR).save(image_out, quality=95)
        label_img = label_img.resize(size, Image.NEAREST)
    elif image_path.lower().endswith((".jpg", ".jpeg")):
        shutil.copyfile(image_path, image_out)
    else:
        image.convert("RGB").save(image_out, quality=95)
    label_img.save(os.path.join(label_dir, stem + ".tif"))
    return stem


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    index = read_index(args.root)
    objectnames = list(index["objectnames"])
    jobs = split_images(index, args.root)
    if args.categories:
        with open(require_path(args.categories, "Pass an existing --categories json.")) as f:
            classes = match_categories(json.load(f), objectnames)
    else:
        counts = count_train_images(jobs["train"], len(objectnames), args.workers)
        classes = most_frequent(counts, objectnames, args.num_classes)
    print(f"{len(classes)} classes, first: {[c['name'] for c in classes[:5]]}")
    lut = class_lut(classes, len(objectnames))

    outputs = {}
    for split in args.splits:
        layout = SEM_SEG_LAYOUT[f"ade20k_full_sem_seg_{split}"]
        image_dir = os.path.join(args.root, layout["image_root"])
        label_dir = os.path.join(args.root, layout["sem_seg_root"])
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(label_dir, exist_ok=True)
        fn = functools.partial(_convert_one, image_dir=image_dir, label_dir=label_dir, lut=lut,
                               max_short_side=args.max_short_side)
        for _ in progress(parallel_map(fn, jobs[split], args.workers), len(jobs[split]),
                          f"[ade-847] {split}"):
            pass
        outputs[split] = label_dir
    outputs["classes"] = write_json(
        classes, os.path.join(args.root, SEM_SEG_LAYOUT["ade20k_full_sem_seg_val"]["classes"]))
    return outputs


if __name__ == "__main__":
    main()
