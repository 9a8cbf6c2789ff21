"""Write the synthetic world to disk in COCO detection / panoptic / semantic / caption formats.

Layout under ``ROOT/synthetic/`` (``ROOT`` is normally ``$DETECTRON2_DATASETS``)::

    train/000000.png ...                  val/...            images (PNG, exact)
    panoptic_train/000000.png ...         panoptic_val/...   COCO panoptic PNGs (panopticapi id2rgb)
    panoptic_semseg_train/000000.png ...  panoptic_semseg_val/...
                                          uint8 contiguous class (category_id - 1), 255 = unlabeled
    annotations/instances_train.json      base things only (categories list all 30 things)
    annotations/instances_train_all.json  all things (analysis: novel objects in training images)
    annotations/instances_val.json        all things (== instances_val_all.json)
    annotations/panoptic_{train,val}.json COCO panoptic (35 categories with isthing)
    annotations/captions_{train,val}.json COCO captions (one per image, novel objects included)
    meta.json                             seed, counts, class lists, base/novel split, statistics

In the training split novel things are unlabeled everywhere except ``instances_train_all.json`` and
the captions: no detection annotation, panoptic id 0 (void) and semantic label 255.
"""
import json
import multiprocessing as mp
import os
import shutil
import time
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np
from panopticapi.utils import id2rgb
from PIL import Image
from pycocotools import mask as mask_util

from ..utils.atomic import atomic_path
from .world import (
    ALL_CLASSES,
    BASE_CLASSES,
    CATEGORIES,
    NOVEL_CLASSES,
    STUFF_CLASSES,
    THING_CLASSES,
    generate_scene,
    panoptic_map,
    semantic_map,
)

__all__ = ["WORLD_VERSION", "SPLITS", "world_paths", "encode_mask", "prepare_world"]

WORLD_VERSION = 1
SPLITS = ("train", "val")
PREPARE_COMMAND = "python datasets/prepare_synthetic.py --root {root}"


def world_paths(root: str) -> Dict[str, str]:
    """Every path of the world under ``root`` (the datasets root); touches no file.

    Keys: ``dir``, ``meta``, ``annotations``, and for each split s in (train, val):
    ``{s}_images``, ``{s}_panoptic``, ``{s}_semseg``, ``instances_{s}``, ``instances_{s}_all``,
    ``panoptic_{s}``, ``captions_{s}``.
    """
    base = os.path.join(root, "synthetic")
    ann = os.path.join(base, "annotations")
    paths = {"dir": base, "meta": os.path.join(base, "meta.json"), "annotations": ann}
    for s in SPLITS:
        paths[f"{s}_images"] = os.path.join(base, s)
        paths[f"{s}_panoptic"] = os.path.join(base, f"panoptic_{s}")
        paths[f"{s}_semseg"] = os.path.join(base, f"panoptic_semseg_{s}")
        paths[f"instances_{s}"] = os.path.join(ann, f"instances_{s}.json")
        paths[f"instances_{s}_all"] = os.path.join(ann, f"instances_{s}_all.json")
        paths[f"panoptic_{s}"] = os.path.join(ann, f"panoptic_{s}.json")
        paths[f"captions_{s}"] = os.path.join(ann, f"captions_{s}.json")
    return paths


def encode_mask(mask: np.ndarray) -> dict:
    """COCO RLE of a binary (H, W) mask with ``counts`` as a str (JSON-serialisable)."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _save_png(array: np.ndarray, path: str) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def _render_one(job: Tuple) -> dict:
    """Generate scene ``index``, write its three PNGs and return its JSON-ready records."""
    seed, split, index, image_size, dirs, hide_novel = job
    scene = generate_scene(seed, split, index, image_size)
    name = scene["file_name"]
    _save_png(scene["image"], os.path.join(dirs[0], name))
    pan, segments = panoptic_map(scene, hide_novel=hide_novel)
    _save_png(id2rgb(pan).astype(np.uint8), os.path.join(dirs[1], name))
    _save_png(semantic_map(scene, hide_novel=hide_novel), os.path.join(dirs[2], name))
    objects = [
        {"category_id": t["category_id"], "segmentation": encode_mask(t["mask"]),
         "area": t["area"], "bbox": t["bbox"], "iscrowd": 0, "novel": t["novel"]}
        for t in scene["things"]
    ]
    return {
        "image": {"id": scene["image_id"], "file_name": name, "height": scene["height"],
                  "width": scene["width"]},
        "objects": objects,
        "segments_info": segments,
        "caption": scene["caption"],
    }


def _dump(obj, path: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, separators=(",", ":"))


def _write_split(split, records, paths, seed, hide_novel) -> dict:
    info = {"description": f"CLIPSelf synthetic world, split {split}, seed {seed}",
            "version": str(WORLD_VERSION)}
    images = [r["image"] for r in records]
    things = [{k: c[k] for k in ("id", "name", "supercategory", "shape", "colour", "split")}
              for c in CATEGORIES if c["isthing"]]
    all_anns, base_anns, captions, panoptic = [], [], [], []
    for r in records:
        image_id = r["image"]["id"]
        for obj in r["objects"]:
            ann = {k: v for k, v in obj.items() if k != "novel"}
            ann.update(id=len(all_anns) + 1, image_id=image_id)
            all_anns.append(ann)
            if not (hide_novel and obj["novel"]):
                base_anns.append(ann)
        captions.append({"id": image_id, "image_id": image_id, "caption": r["caption"]})
        panoptic.append({"image_id": image_id, "file_name": r["image"]["file_name"],
                         "segments_info": r["segments_info"]})
    common = {"info": info, "licenses": [], "images": images}
    _dump(dict(common, annotations=base_anns, categories=things), paths[f"instances_{split}"])
    _dump(dict(common, annotations=all_anns, categories=things), paths[f"instances_{split}_all"])
    _dump(dict(common, annotations=panoptic, categories=list(CATEGORIES)),
          paths[f"panoptic_{split}"])
    _dump(dict(common, annotations=captions), paths[f"captions_{split}"])
    novel = [a for r in records for a in r["objects"] if a["novel"]]
    return {
        "images": len(images),
        "objects": len(all_anns),
        "annotated_objects": len(base_anns),
        "novel_objects": len(novel),
        "images_with_novel": sum(any(a["novel"] for a in r["objects"]) for r in records),
        "images_with_two_stuff": sum(
            sum(s["category_id"] > len(THING_CLASSES) for s in r["segments_info"]) > 1
            for r in records),
    }


def prepare_world(
    root: str,
    num_train: int = 2000,
    num_val: int = 300,
    seed: int = 0,
    *,
    workers: Optional[int] = None,
    image_size: Optional[Union[int, Tuple[int, int]]] = None,
    log: Optional[Callable[[str], None]] = None,
) -> Dict[str, str]:
    """Generate the world and write it under ``root/synthetic`` (see the module docstring).

    Output is byte-identical for identical arguments (whatever ``workers``). Existing image and
    annotation folders of the world are replaced.

    Args:
        root (str): datasets root (normally ``$DETECTRON2_DATASETS``).
        num_train, num_val (int): number of scenes per split.
        seed (int): world seed.
        workers (int or None): processes used for rendering; None = up to 4 by CPU count for
            more than 200 images, else 1 (in-process).
        image_size (int or (H, W) or None): fixed scene size; None = random 96..192 px sides.
        log (callable or None): receives progress lines (e.g. ``print``).

    Returns:
        dict[str, str]: :func:`world_paths` of ``root``.
    """
    paths = world_paths(root)
    total = num_train + num_val
    if workers is None:
        workers = min(4, os.cpu_count() or 1) if total > 200 else 1
    os.makedirs(paths["annotations"], exist_ok=True)
    stats = {}
    start = time.perf_counter()
    done = 0
    pool = None
    if workers > 1:
        # spawn, not fork: forking a process whose torch thread pool is running can deadlock
        pool = mp.get_context("spawn").Pool(workers)
    try:
        for split, count in zip(SPLITS, (num_train, num_val)):
            dirs = (paths[f"{split}_images"], paths[f"{split}_panoptic"], paths[f"{split}_semseg"])
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
                os.makedirs(d)
            hide_novel = split == "train"
            jobs = [(seed, split, i, image_size, dirs, hide_novel) for i in range(count)]
            it = pool.imap(_render_one, jobs, chunksize=8) if pool else map(_render_one, jobs)
            records = []
            step = max(1, count // 10)
            for rec in it:
                records.append(rec)
                done += 1
                if log and (len(records) % step == 0 or len(records) == count):
                    el = time.perf_counter() - start
                    log(f"[synthetic] {split} {len(records)}/{count}  "
                        f"{done / el:.0f} img/s  ETA {el / done * (total - done):.0f}s")
            stats[split] = _write_split(split, records, paths, seed, hide_novel)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    meta = {
        "generator": "clipself.synthetic", "version": WORLD_VERSION, "seed": int(seed),
        "num_train": int(num_train), "num_val": int(num_val),
        "image_size": image_size if image_size is None or isinstance(image_size, int)
        else list(image_size),
        "thing_classes": list(THING_CLASSES), "stuff_classes": list(STUFF_CLASSES),
        "all_classes": list(ALL_CLASSES), "base_classes": list(BASE_CLASSES),
        "novel_classes": list(NOVEL_CLASSES),
        "categories": [{k: c[k] for k in ("id", "name", "isthing")} for c in CATEGORIES],
        "train_annotations": "base things only (novel: unlabeled / void / 255)",
        "stats": stats,
    }
    _dump(meta, paths["meta"])
    if log:
        log(f"[synthetic] wrote {total} scenes to {paths['dir']} "
            f"in {time.perf_counter() - start:.1f}s ({workers} worker(s))")
    return paths
