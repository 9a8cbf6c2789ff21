"""Small helpers shared by the ``datasets/prepare_*.py`` scripts (json I/O, progress, workers).

The scripts are plain files, not a package; they import these helpers from the installed
``clipself`` package so that each of them stays short.
"""
import argparse
import json
import multiprocessing as mp
import os
import time
from typing import Callable, Iterable, Iterator, Optional, Sequence

from .paths import dataset_root, require_path

__all__ = [
    "load_json", "write_json", "progress", "parallel_map", "list_files", "basic_argument_parser",
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
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)  # never leave a truncated file behind
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
    from .ade20k import ADE20K_INSTANCE_CATID_MAPPING, ADE20K_INSTANCE_IMG_CAT_IDS

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
    from .ade20k import (
        ADE20K_INSTANCE_CATID_MAPPING,
        ADE20K_INSTANCE_IMG_CAT_IDS,
        resolve_instance_catid_mapping,
    )

    return resolve_instance_catid_mapping(
        args.catid_mapping or os.path.join(args.root, ADE20K_INSTANCE_CATID_MAPPING),
        args.img_cat_ids or os.path.join(args.root, ADE20K_INSTANCE_IMG_CAT_IDS),
        required=args.catid_mapping is not None,
    )
