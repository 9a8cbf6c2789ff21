"""A cache of the frozen teacher's crop embeddings (docs/performance.md §2).

The teacher never changes during CLIPSelf training and the crops of a region are a function of
the image, the crop box and the crop size (``CLIPSelfMapper`` has no random augmentation). With
region proposals the same boxes come back every epoch, so their embeddings can be computed once.
Entries are keyed by ``(image file, crop box in original pixels, crop side)`` within a namespace
that is the SHA-1 of the teacher's weights: another teacher (or another checkpoint) never reads
them. They live in memory, and on disk when a directory is given (one file per image, written
atomically), so that later runs with the same teacher start warm.

Grid cells (patch distillation) are drawn at random from 24 grids per image and step: they
rarely repeat, so the cache is meant for ``region_source="proposals"``.
"""
import hashlib
import os
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from ..checkpoint import save_checkpoint_file

__all__ = ["TeacherCache", "crop_keys", "weights_hash"]


def weights_hash(module: nn.Module) -> str:
    """SHA-1 of a module's state dict (names, dtypes, shapes and bytes, in key order)."""
    h = hashlib.sha1()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def crop_keys(image_key: str, crop_boxes: torch.Tensor, crop_size: int) -> List[str]:
    """One key per crop: ``"x0,y0,x1,y1@C"`` with the box in original pixels (4 decimals).

    Args:
        image_key (str): names the image (its file name).
        crop_boxes (Tensor): (R, 4) xyxy crop boxes in original image pixels.
        crop_size (int): C, the teacher's input side.
    Returns:
        list[str]: R keys, each prefixed by ``image_key``.
    """
    rows = crop_boxes.detach().cpu().double().tolist()
    return [f"{image_key}|" + ",".join(f"{v:.4f}" for v in r) + f"@{int(crop_size)}" for r in rows]


class TeacherCache:
    """Teacher embeddings of crops, in memory and optionally on disk.

    Args:
        directory (str or None): where to keep entries across runs (None: memory only).
        dtype (torch.dtype): storage dtype of the embeddings (float32: exact).
        max_images (int or None): with a directory, keep the entries of at most this many
            recently used images in memory (the others are read back from disk when needed);
            None = all. COCO with 20 proposals of a B/16 teacher is about 5 GB in float32.
    """

    def __init__(self, directory: Optional[str] = None, dtype: torch.dtype = torch.float32,
                 max_images: Optional[int] = None):
        if max_images is not None and directory is None:
            raise ValueError("max_images evicts entries to disk: give a directory too")
        self.directory = directory
        self.dtype = dtype
        self.max_images = max_images
        self.namespace: Optional[str] = None
        self._mem: Dict[str, torch.Tensor] = {}
        self._keys_of: Dict[str, set] = {}  # image -> its keys (what its disk file holds)
        self._loaded_images: "OrderedDict[str, None]" = OrderedDict()  # least recent first
        self.hits = 0
        self.misses = 0

    def bind(self, teacher: nn.Module) -> None:
        """Set the namespace from the teacher's weights (call once the weights are final)."""
        ns = weights_hash(teacher)
        if ns != self.namespace:
            self._mem.clear()
            self._keys_of.clear()
            self._loaded_images.clear()
        self.namespace = ns

    def _file(self, image_key: str) -> Optional[str]:
        if self.directory is None:
            return None
        name = hashlib.sha1(image_key.encode()).hexdigest()
        return os.path.join(self.directory, self.namespace, name[:2], name + ".pt")

    def _evict(self) -> None:
        while self.max_images is not None and len(self._loaded_images) > self.max_images:
            old, _ = self._loaded_images.popitem(last=False)
            for k in self._keys_of.pop(old, ()):
                self._mem.pop(k, None)

    def _load_image(self, image_key: str) -> None:
        if image_key in self._loaded_images:
            self._loaded_images.move_to_end(image_key)
            return
        self._loaded_images[image_key] = None
        path = self._file(image_key)
        if path and os.path.isfile(path):
            stored = torch.load(path, map_location="cpu", weights_only=True)
            for k, v in stored.items():
                self._mem.setdefault(k, v)
            self._keys_of.setdefault(image_key, set()).update(stored)

    def _save_image(self, image_key: str) -> None:
        path = self._file(image_key)
        if path is None:
            return
        entries = {k: self._mem[k] for k in sorted(self._keys_of.get(image_key, ()))}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_checkpoint_file(entries, path)

    def __len__(self) -> int:
        return len(self._mem)

    def embed(
        self,
        image_keys: Sequence[str],
        keys: Sequence[str],
        compute: Callable[[List[int]], torch.Tensor],
    ) -> torch.Tensor:
        """Embeddings for ``keys``: cached ones are read, the others computed and stored.

        Args:
            image_keys (list[str]): the image of each key (which disk file holds it).
            keys (list[str]): R crop keys (:func:`crop_keys`).
            compute (callable): indices of the missing crops -> their (M, D) embeddings.
        Returns:
            Tensor: (R, D) on the device and in the dtype ``compute`` returns (float32 when
            everything was cached).
        """
        if self.namespace is None:
            raise RuntimeError("TeacherCache.bind(teacher) must be called before embed()")
        for im in dict.fromkeys(image_keys):
            self._load_image(im)
        missing = [i for i, k in enumerate(keys) if k not in self._mem]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        fresh = compute(missing) if missing else None
        if fresh is not None:
            for i, row in zip(missing, fresh.detach()):
                self._mem[keys[i]] = row.to("cpu", self.dtype).clone()
                self._keys_of.setdefault(image_keys[i], set()).add(keys[i])
            for im in dict.fromkeys(image_keys[i] for i in missing):
                self._save_image(im)
        device = fresh.device if fresh is not None else torch.device("cpu")
        out_dtype = fresh.dtype if fresh is not None else torch.float32
        rows = [self._mem[k] for k in keys]
        if not rows:
            return torch.zeros(0, 0, device=device, dtype=out_dtype)
        out = torch.stack(rows).to(device=device, dtype=out_dtype)
        if fresh is not None:  # the computed rows exactly as computed (no dtype round trip)
            out[missing] = fresh.detach().to(out_dtype)
        self._evict()
        return out
