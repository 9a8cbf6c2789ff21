"""Reading and writing checkpoint files: nothing executes, nothing is left half-written.

* :func:`read_checkpoint`: ``torch.load(weights_only=True)`` for ``.pth`` / ``.pt`` / anything
  torch wrote, safetensors for ``.safetensors``, TorchScript archives (OpenAI CLIP) through
  ``torch.jit.load``, and Detectron2 / Caffe2 model-zoo ``.pkl`` files through
  :func:`read_pickle_checkpoint`, an unpickler that only rebuilds NumPy arrays and plain
  containers. A file that needs anything else is refused with a message saying how to convert it.
* :func:`save_checkpoint_file`: ``torch.save`` to a temporary file in the target folder, then an
  atomic rename; a full disk raises :class:`CheckpointWriteError` naming the folder, the size
  needed and the space left, and leaves any previous file intact.
"""
import contextlib
import errno
import io
import os
import pickle
import shutil
from typing import Any

import torch
from safetensors.torch import load_file

from ..utils.atomic import atomic_path

__all__ = [
    "CheckpointWriteError",
    "UnsafeCheckpointError",
    "checkpoint_nbytes",
    "read_checkpoint",
    "read_pickle_checkpoint",
    "save_checkpoint_file",
    "save_text_file",
]

#: What a model-zoo ``.pkl`` may contain: NumPy arrays / scalars / dtypes and plain containers.
_PICKLE_ALLOWED = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
}

_CONVERT_HINT = (
    "If you trust the file, convert it once in a separate Python session: "
    "import pickle, torch; d = pickle.load(open(SRC, 'rb'), encoding='latin1'); "
    "torch.save({'model': {k: torch.as_tensor(v) for k, v in d['model'].items()}}, DST) "
    "and pass DST instead."
)


_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint file asks to run or import code while it is read."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, read-only folder); nothing was replaced."""


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds only what :data:`_PICKLE_ALLOWED` names."""

    def __init__(self, file, path: str):
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise UnsafeCheckpointError(
            f"{self._path}: refusing to unpickle '{module}.{name}'. A .pkl checkpoint may only "
            f"hold NumPy arrays in dicts and lists (Detectron2's model-zoo format); this one asks "
            f"for other Python objects, and unpickling them could run code. {_CONVERT_HINT}"
        )


def read_pickle_checkpoint(path: str) -> Any:
    """Read a Detectron2 / Caffe2 model-zoo ``.pkl`` without running code from it.

    Args:
        path (str): a pickle of dicts / lists of NumPy arrays.
    Returns:
        the unpickled object.
    Raises:
        UnsafeCheckpointError: the pickle references any other class or function.
    """
    with open(path, "rb") as f:
        return _ArrayUnpickler(f, path).load()


def read_checkpoint(path: str) -> Any:
    """Read a checkpoint file safely (files may come from the internet).

    ``.pkl``: :func:`read_pickle_checkpoint`; ``.safetensors``: safetensors; anything else:
    ``torch.load(..., weights_only=True)``, or ``torch.jit.load`` for a TorchScript archive
    (OpenAI's released CLIP files), of which only the state dict is used.

    Args:
        path (str): file path.
    Returns:
        the loaded object (usually a dict).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if str(path).endswith(".pkl"):
        return read_pickle_checkpoint(path)
    if str(path).endswith(".safetensors"):
        return load_file(path, device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a TorchScript archive (OpenAI CLIP) is not a pickle
        try:
            return torch.jit.load(path, map_location="cpu").state_dict()
        except Exception:
            raise UnsafeCheckpointError(
                f"could not read {path} with torch.load(weights_only=True): {err}. Only tensor "
                f"checkpoints (state dicts, optimizer states) are accepted; a file that needs "
                f"other Python objects is refused because unpickling them could run code."
            ) from err


def checkpoint_nbytes(obj: Any) -> int:
    """Bytes of the tensors (and NumPy arrays) inside a nested checkpoint object."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if hasattr(obj, "nbytes") and not isinstance(obj, (str, bytes)):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(checkpoint_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(checkpoint_nbytes(v) for v in obj)
    return 0


def _free_bytes(folder: str) -> int:
    with contextlib.suppress(OSError):
        return shutil.disk_usage(folder).free
    return -1


def save_checkpoint_file(obj: Any, path: str) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same folder and a rename.

    Readers never see a partial file, and a failed write leaves the previous ``path`` intact.

    Raises:
        CheckpointWriteError: the disk is full (or the folder is not writable), with the folder,
            the size needed and the space left.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
    except (OSError, RuntimeError) as err:
        # torch's zip writer reports a full disk as a RuntimeError ("unexpected pos ..."), so
        # the free space decides when the error itself does not say
        need = checkpoint_nbytes(obj)
        free = _free_bytes(folder)
        full = isinstance(err, OSError) and err.errno in _WRITE_ERRNOS
        if full or 0 <= free < need + 2**20 or "No space left" in str(err):
            left = f"{free / 2**20:.1f} MiB free" if free >= 0 else "free space unknown"
            raise CheckpointWriteError(
                getattr(err, "errno", None) or errno.ENOSPC,
                f"could not write {os.path.basename(path)} to {folder}: "
                f"{getattr(err, 'strerror', None) or 'No space left on device'}. It needs about "
                f"{need / 2**20:.1f} MiB ({left}); free space there or point train.output_dir at "
                f"another disk. Nothing was replaced: earlier files in {folder} are intact.",
            ) from err
        raise


def save_text_file(text: str, path: str) -> None:
    """Write a small text file atomically (e.g. Detectron2's ``last_checkpoint`` tag)."""
    with atomic_path(path) as tmp:
        with io.open(tmp, "w") as f:
            f.write(text)
