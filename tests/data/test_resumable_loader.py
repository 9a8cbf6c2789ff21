"""The resumable train loader: batch k is a function of (seed, k) only, whatever the number of
workers, and ``set_loader_position(k)`` starts the stream at batch k (exact resume without replay;
the end-to-end kill-and-resume runs are tests/test_exact_resume.py)."""
import itertools
import random

import numpy as np
import torch

from clipself.data.resumable_loader import build_train_loader, set_loader_position


def _records(n=7):
    # 5 landscape and 2 portrait records: aspect-ratio grouping batches them separately
    return [{"image_id": i, "width": 40 if i < 5 else 20, "height": 20 if i < 5 else 40}
            for i in range(n)]


def _mapper(record):
    """A mapper that draws from all three RNGs, as augmentations do."""
    return {"image_id": record["image_id"],
            "draws": (random.random(), float(np.random.rand()), float(torch.rand(())))}


def _batches(loader, n):
    return [[(x["image_id"], x["draws"]) for x in batch] for batch in itertools.islice(loader, n)]


def test_batches_do_not_depend_on_the_workers():
    ref = _batches(build_train_loader(_records(), mapper=_mapper, total_batch_size=2, seed=3),
                   9)
    two = _batches(build_train_loader(_records(), mapper=_mapper, total_batch_size=2, seed=3,
                                      num_workers=2), 9)
    assert two == ref
    for batch in ref:  # grouped by orientation
        assert len({i < 5 for i, _ in batch}) == 1
    ids = [i for batch in ref for i, _ in batch]
    assert set(ids) == set(range(7))  # 9 batches of 2 span more than one epoch
    other = _batches(build_train_loader(_records(), mapper=_mapper, total_batch_size=2, seed=4),
                     9)
    assert other != ref


def test_a_resumed_loader_continues_the_stream_exactly():
    ref = _batches(build_train_loader(_records(), mapper=_mapper, total_batch_size=2, seed=3),
                   12)
    for start, workers in ((5, 0), (7, 2)):
        loader = build_train_loader(_records(), mapper=_mapper, total_batch_size=2, seed=3,
                                    num_workers=workers)
        assert set_loader_position(loader, start)
        assert _batches(loader, 12 - start) == ref[start:]


def test_position_is_refused_for_another_loader():
    assert not set_loader_position(torch.utils.data.DataLoader(list(range(4))), 3)
