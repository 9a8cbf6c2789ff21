"""Event writers of a training run: ``metrics.json`` never ends in a partial line."""
import json
import os
from collections import defaultdict

from detectron2.utils.events import (
    CommonMetricPrinter,
    EventWriter,
    TensorboardXWriter,
    get_event_storage,
)

__all__ = ["JSONWriter", "default_writers"]


class JSONWriter(EventWriter):
    """Detectron2's ``JSONWriter`` (one JSON object per line, appended), written so that a
    failed write (a full disk) leaves the file at its last complete line.

    Each call writes its lines with one unbuffered ``os.write`` loop and, on an ``OSError``,
    truncates the file back to where it was before raising an error that names the file.

    Args:
        json_file (str): path; new lines are appended when it exists.
        window_size (int): median smoothing window for scalars with ``smoothing_hint``.
    """

    def __init__(self, json_file: str, window_size: int = 20):
        self._path = json_file
        self._fd = os.open(json_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._window_size = window_size
        self._last_write = -1

    def write(self) -> None:
        storage = get_event_storage()
        to_save = defaultdict(dict)
        for k, (v, itr) in storage.latest_with_smoothing_hint(self._window_size).items():
            if itr > self._last_write:  # scalars not written yet
                to_save[itr][k] = v
        if not to_save:
            return
        lines = []
        for itr in sorted(to_save):
            scalars = dict(to_save[itr], iteration=itr)
            lines.append(json.dumps(scalars, sort_keys=True) + "\n")
        data = "".join(lines).encode()
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as err:
            os.ftruncate(self._fd, start)  # back to the last complete line
            raise OSError(
                err.errno, f"could not append to {self._path}: {err.strerror}; the file keeps "
                f"its last complete line (free space in {os.path.dirname(self._path) or '.'})"
            ) from err
        self._last_write = max(to_save)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def default_writers(output_dir: str, max_iter: int):
    """Detectron2's default writers (console, ``metrics.json``, TensorBoard) with the
    :class:`JSONWriter` above."""
    return [
        CommonMetricPrinter(max_iter),
        JSONWriter(os.path.join(output_dir, "metrics.json")),
        TensorboardXWriter(output_dir),
    ]
