"""Atomic file writes that are safe when several processes write the same path at once."""
import contextlib
import os
import uuid
from typing import Iterator

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a private temporary path next to ``path``; on success it replaces ``path`` atomically.

    Each writer gets its own temporary file (a shared ``path + ".tmp"`` lets two processes
    truncate each other's file and makes the second ``os.replace`` fail), so concurrent writers
    of the same cache entry both succeed and readers only ever see a complete file. On error the
    temporary file is removed and ``path`` is left as it was. Parent folders are created.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # pid + random suffix: unique across processes and threads; the caller creates the file
    # itself, so it gets the usual permissions (mkstemp would make it owner-only)
    name = f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    tmp = os.path.join(folder, name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
