"""Small helpers shared by the ``datasets/prepare_*.py`` scripts (json I/O, progress, workers).

The scripts are plain files, not a package; they import these helpers from the installed
``clipself`` package so that each of them stays short.
"""
import argparse
import functools
import json
import multiprocessing as mp
import os
import time
from typing import Callable, Iterable, Iterator, Optional, Sequence

from ...utils.atomic import atomic_path
from .ade20k import (
    ADE20K_INSTANCE_CATID_MAPPING,
    ADE20K_INSTANCE_IMG_CAT_IDS,
    resolve_instance_catid_mapping,
)
from .paths import dataset_root, require_path
from .sem_seg_benchmarks import (
    GET_PASCAL_CONTEXT,
    SEM_SEG_LAYOUT,
    read_image_list,
    read_pascal_context_labels,
)

__all__ = [
    "load_json", "write_json", "progress", "parallel_map", "list_files", "basic_argument_parser",
    "pascal_context_argument_parser", "convert_pascal_context",
]


def load_json(path: str, how_to_get: str, log: Callable = print):
    """Read a json file, failing with a message that names the file and how to obtain it.

    Args:
        path (str): the json file.
        how_to_get (str): what to do when it is missing (download / prepare command).
        log (callable): progress printer.
    """
    require_path(path, how_to_get)
    log(f"loading {path}")
    start = time.perf_counter()
    with open(path) as f:
        data = json.load(f)
    log(f"  loaded in {time.perf_counter() - start:.1f} s")
    return data


def write_json(obj, path: str, log: Callable = print) -> str:
    """Write ``obj`` as json to ``path`` (parent folders are created); returns ``path``."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:  # never leave a truncated file behind
        json.dump(obj, f)
    log(f"wrote {path}")
    return path


def list_files(folder: str, ext: str, how_to_get: str) -> list:
    """Sorted file names (not paths) in ``folder`` that end with ``ext``; the folder must exist."""
    require_path(folder, how_to_get)
    return sorted(f for f in os.listdir(folder) if f.endswith(ext))


def progress(items: Iterable, total: int, desc: str, log: Callable = print) -> Iterator:
    """Yield ``items`` unchanged and print ``desc: i/total (p%), elapsed, ETA`` about 20 times."""
    step = max(1, total // 20)
    start = time.perf_counter()
    i = 0
    for i, item in enumerate(items, 1):
        yield item
        if i % step == 0 or i == total:
            elapsed = time.perf_counter() - start
            eta = elapsed / i * max(total - i, 0)
            log(f"{desc}: {i}/{total} ({100.0 * i / max(total, 1):.0f}%), "
                f"{elapsed:.0f} s elapsed, ETA {eta:.0f} s")
    if i == 0:
        log(f"{desc}: nothing to do")


def parallel_map(fn: Callable, items: Sequence, workers: Optional[int] = 1,
                 chunksize: int = 8) -> Iterator:
    """``map(fn, items)`` in order, in ``workers`` processes when ``workers > 1``.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one).
    """
    if not workers or workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    with mp.Pool(min(workers, len(items))) as pool:
        yield from pool.imap(fn, items, chunksize=chunksize)


def basic_argument_parser(description: str, splits: Optional[Sequence[str]] = None,
                          workers: bool = True) -> argparse.ArgumentParser:
    """``--root`` (default ``$DETECTRON2_DATASETS`` or ``./datasets``), optionally ``--splits``
    (choices and default: ``splits``) and ``--workers``: the command line of a prepare script."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", default=dataset_root(),
                        help="datasets root (default: $DETECTRON2_DATASETS or ./datasets)")
    if splits:
        parser.add_argument("--splits", nargs="+", default=list(splits), choices=list(splits))
    if workers:
        parser.add_argument("--workers", type=int, default=1, help="processes (default: 1)")
    return parser


#: how to get ADE20K's files (messages of missing-file errors)
GET_ADE = "Download and unzip ADEChallengeData2016.zip into the datasets root."
GET_ADE_INSTANCES = ("Download annotations_instance.tar (ADE20K instance segmentation challenge) "
                     "and extract it into ADEChallengeData2016/.")


def ade20k_argument_parser(description: str, instances: bool = False) -> argparse.ArgumentParser:
    """The command line shared by the ``datasets/prepare_ade20k_*.py`` scripts.

    Args:
        description (str): the script's one-line description.
        instances (bool): add ``--catid-mapping`` and ``--img-cat-ids`` (instance files).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", default=dataset_root(),
                        help="datasets root (default: $DETECTRON2_DATASETS or ./datasets)")
    parser.add_argument("--splits", nargs="+", default=["train", "val"], choices=["train", "val"],
                        help="train = training/, val = validation/")
    if instances:
        parser.add_argument("--catid-mapping", default=None,
                            help=f"default: ROOT/{ADE20K_INSTANCE_CATID_MAPPING}")
        parser.add_argument("--img-cat-ids", default=None,
                            help=f"default: ROOT/{ADE20K_INSTANCE_IMG_CAT_IDS}")
    parser.add_argument("--workers", type=int, default=1, help="processes (default: 1)")
    return parser


def ade20k_instance_mapping(args: argparse.Namespace) -> dict:
    """The ADE20K instance-class mapping named by ``--catid-mapping`` / ``--img-cat-ids`` (or
    their defaults under ``--root``); required only when given explicitly."""
    return resolve_instance_catid_mapping(
        args.catid_mapping or os.path.join(args.root, ADE20K_INSTANCE_CATID_MAPPING),
        args.img_cat_ids or os.path.join(args.root, ADE20K_INSTANCE_IMG_CAT_IDS),
        required=args.catid_mapping is not None,
    )


#: PASCAL-Context's folder under the datasets root (``labels.txt``, ``trainval/*.mat``, splits)
PASCAL_CONTEXT_ROOT = "VOCdevkit/VOC2010"


def pascal_context_argument_parser(description: str) -> argparse.ArgumentParser:
    """The command line shared by the ``datasets/prepare_pascal_context_*.py`` scripts:
    ``--root``, ``--workers``, ``--labels`` and ``--split-file``."""
    parser = basic_argument_parser(description)
    parser.add_argument("--labels", default="labels.txt",
                        help="PASCAL-Context labels.txt (relative to VOCdevkit/VOC2010)")
    parser.add_argument("--split-file", default="ImageSets/Main/val.txt",
                        help="image ids to convert (relative to VOCdevkit/VOC2010)")
    return parser


def convert_pascal_context(args: argparse.Namespace, dataset_name: str, parse_labels: Callable,
                           convert_one: Callable, desc: str):
    """Convert the ``trainval/<id>.mat`` of every image of ``--split-file`` into the
    ``sem_seg_root`` of ``dataset_name``: the body of the PASCAL-Context prepare scripts.

    Args:
        args (argparse.Namespace): parsed by ``pascal_context_argument_parser``.
        dataset_name (str): a ``SEM_SEG_LAYOUT`` entry, whose ``sem_seg_root`` is written.
        parse_labels (callable): ``{id: name}`` of labels.txt -> ``table`` (it validates them).
        convert_one (callable): ``convert_one(table, mat_dir, dst_dir, image_id)`` writes one
            map; module-level, so that it pickles for ``--workers``.
        desc (str): the progress prefix.

    Returns:
        (str, object): the output folder and ``table``.
    """
    base = os.path.join(args.root, PASCAL_CONTEXT_ROOT)
    labels_file = require_path(os.path.join(base, args.labels), GET_PASCAL_CONTEXT)
    table = parse_labels(read_pascal_context_labels(labels_file))
    image_ids = read_image_list(os.path.join(base, args.split_file), GET_PASCAL_CONTEXT)
    mat_dir = require_path(os.path.join(base, "trainval"), GET_PASCAL_CONTEXT)
    dst_dir = os.path.join(args.root, SEM_SEG_LAYOUT[dataset_name]["sem_seg_root"])
    os.makedirs(dst_dir, exist_ok=True)
    fn = functools.partial(convert_one, table, mat_dir, dst_dir)
    for _ in progress(parallel_map(fn, image_ids, args.workers), len(image_ids), desc):
        pass
    return dst_dir, table
