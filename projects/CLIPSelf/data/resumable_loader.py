"""A training data loader whose stream is a pure function of (seed, batch index).

Detectron2's ``build_detection_train_loader`` shuffles with one generator over an infinite
stream, draws augmentations from each worker's RNG, and groups aspect ratios after the workers;
its position cannot be saved, so ``--resume`` restarts the data order and a resumed run differs
from an uninterrupted one. :func:`build_train_loader` takes the same arguments and instead:

* numbers every sample of the infinite stream by its **position** ``p``: epoch ``p // N`` is a
  permutation of the N records seeded by ``(seed, epoch)``;
* forms **global** batches of ``total_batch_size`` from the stream (consecutive positions, or,
  with ``aspect_ratio_grouping``, consecutive positions of the same orientation, as Detectron2
  groups them), and gives rank ``r`` the ``r``-th slice: the global batch does not depend on
  the number of processes;
* maps each sample under RNGs (``random``, NumPy, torch) seeded by ``(seed, p)``: its
  augmentation does not depend on the worker, the number of workers or a restart.

So batch ``k`` is the same in every run with the same seed, and resuming at iteration ``k`` is
``loader.batch_sampler.start = k`` (:func:`set_loader_position`), with no replay of the data.
"""
import contextlib
import logging
import random
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.utils.data as torchdata
from detectron2.data.build import trivial_batch_collator
from detectron2.data.common import DatasetFromList
from detectron2.utils import comm

__all__ = [
    "ResumableBatchSampler",
    "SeededMapDataset",
    "build_train_loader",
    "sample_seed",
    "set_loader_position",
]

logger = logging.getLogger(__name__)

Key = Tuple[int, int]  # (stream position, record index)


def sample_seed(seed: int, *stream: int) -> int:
    """A 32-bit seed derived from ``seed`` and stream coordinates (NumPy's SeedSequence)."""
    return int(np.random.SeedSequence([int(seed) % 2**63, *map(int, stream)]).generate_state(1)[0])


@contextlib.contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed ``random``, NumPy and torch for the block, then restore their previous states (so
    that mapping in the main process leaves the model's RNG stream alone)."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


class ResumableBatchSampler(torchdata.Sampler):
    """This rank's slice of global batches of an infinite, seeded, position-numbered stream.

    Args:
        num_records (int): N, the dataset size.
        total_batch_size (int): global batch, divisible by ``world_size``.
        seed (int): fixes the stream.
        shuffle (bool): a seeded permutation per epoch (else 0..N-1 each epoch).
        orientation (sequence[int] or None): per record 0 (portrait) / 1 (landscape) for
            aspect-ratio grouping, or None for no grouping.
        rank, world_size (int): default: the current process group.
    Yields:
        list[(position, record index)] of length ``total_batch_size // world_size``, starting
        at global batch :attr:`start`.
    """

    def __init__(self, num_records: int, total_batch_size: int, *, seed: int,
                 shuffle: bool = True, orientation: Optional[Sequence[int]] = None,
                 rank: Optional[int] = None, world_size: Optional[int] = None):
        if num_records <= 0:
            raise ValueError("the training dataset is empty")
        self.world_size = comm.get_world_size() if world_size is None else world_size
        self.rank = comm.get_rank() if rank is None else rank
        if total_batch_size <= 0 or total_batch_size % self.world_size:
            raise ValueError(f"total_batch_size={total_batch_size} must be a positive multiple "
                             f"of the number of processes ({self.world_size})")
        self.num_records, self.total_batch_size = num_records, total_batch_size
        self.batch_size = total_batch_size // self.world_size
        self.seed, self.shuffle = int(seed), shuffle
        self.orientation = None if orientation is None else list(orientation)
        self.start = 0  # first global batch to yield (set when resuming)

    def stream(self) -> Iterator[Key]:
        """(position, record index) for positions 0, 1, 2, ..."""
        n, epoch = self.num_records, 0
        while True:
            if self.shuffle:
                g = torch.Generator().manual_seed(sample_seed(self.seed, epoch))
                order = torch.randperm(n, generator=g).tolist()
            else:
                order = range(n)
            for offset, index in enumerate(order):
                yield epoch * n + offset, index
            epoch += 1

    def global_batches(self) -> Iterator[List[Key]]:
        """Every global batch from the first, each ``total_batch_size`` keys."""
        size = self.total_batch_size
        if self.orientation is None:
            batch = []
            for key in self.stream():
                batch.append(key)
                if len(batch) == size:
                    yield batch
                    batch = []
        else:
            buckets = ([], [])
            for key in self.stream():
                bucket = buckets[self.orientation[key[1]]]
                bucket.append(key)
                if len(bucket) == size:
                    yield list(bucket)
                    bucket.clear()

    def __iter__(self) -> Iterator[List[Key]]:
        lo = self.rank * self.batch_size
        for k, batch in enumerate(self.global_batches()):
            if k >= self.start:
                yield batch[lo:lo + self.batch_size]

    def __len__(self) -> int:  # infinite; DataLoader only needs it for len(loader)
        raise TypeError("ResumableBatchSampler is infinite")


class SeededMapDataset(torchdata.Dataset):
    """``mapper(records[index])`` under RNGs seeded by ``(seed, position)``.

    A mapper that returns None (a record it cannot use) is retried, as Detectron2's
    ``MapDataset`` does, with other records drawn by a generator of the same seed.
    """

    def __init__(self, records: Sequence[dict], mapper: Callable, seed: int):
        self._records = records
        self._mapper = mapper
        self._seed = int(seed)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, key: Key):
        position, index = key
        rng = random.Random(sample_seed(self._seed, position, 1))
        for attempt in range(len(self._records)):
            with seeded_rngs(sample_seed(self._seed, position)):
                data = self._mapper(self._records[index])
            if data is not None:
                return data
            if attempt == 2:
                logger.warning(f"mapper returned None for position {position} 3 times")
            index = rng.randrange(len(self._records))
        raise RuntimeError("the mapper returned None for every record")


def _orientation(records: Sequence[dict]) -> Optional[List[int]]:
    if not all("width" in r and "height" in r for r in records):
        logger.warning("aspect_ratio_grouping needs 'width' and 'height' in every record; "
                       "batches are not grouped")
        return None
    return [int(r["width"] > r["height"]) for r in records]


def build_train_loader(
    dataset: Sequence[dict],
    *,
    mapper: Callable,
    total_batch_size: int,
    seed: int = 0,
    aspect_ratio_grouping: bool = True,
    shuffle: bool = True,
    num_workers: int = 0,
    collate_fn: Optional[Callable] = None,
    **kwargs,
) -> torchdata.DataLoader:
    """A resumable, world-size independent training loader (see the module docstring).

    Args:
        dataset (list[dict]): Detectron2 dataset dicts (``get_detection_dataset_dicts``).
        mapper (callable): record -> model input (or None to skip the record).
        total_batch_size (int): images per step over all processes.
        seed (int): fixes the order and the augmentations (the configs pass ``train.seed``);
            a negative seed draws one (the run is then not reproducible).
        aspect_ratio_grouping (bool): batch portrait and landscape records separately (by the
            records' ``width`` / ``height``).
        shuffle (bool): shuffle every epoch.
        num_workers (int), collate_fn, kwargs: as for ``torch.utils.data.DataLoader``
            (default collation: a list, as Detectron2's).
    Returns:
        DataLoader: infinite; its ``batch_sampler`` is a :class:`ResumableBatchSampler`.
    """
    if seed is None or int(seed) < 0:
        seed = comm.shared_random_seed()
        logger.warning(f"train loader seed drawn at random ({seed}): set train.seed >= 0 for a "
                       "reproducible, exactly resumable run")
    records = list(dataset)
    sampler = ResumableBatchSampler(
        len(records), total_batch_size, seed=seed, shuffle=shuffle,
        orientation=_orientation(records) if aspect_ratio_grouping else None)
    logger.info(f"Resumable train loader: {len(records)} records, global batch "
                f"{total_batch_size} ({sampler.batch_size} per process), seed {seed}")
    return torchdata.DataLoader(
        SeededMapDataset(DatasetFromList(records, copy=False), mapper, seed),
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn or trivial_batch_collator,
        **kwargs,
    )


def set_loader_position(loader, batches: int) -> bool:
    """Start ``loader`` at global batch ``batches`` (before iterating it).

    Returns:
        bool: False when the loader is not a :func:`build_train_loader` loader (its stream then
        starts from the beginning).
    """
    sampler = getattr(loader, "batch_sampler", None)
    if not isinstance(sampler, ResumableBatchSampler):
        return False
    sampler.start = int(batches)
    return True
