"""Reading Detectron2's ``print_csv_format`` ("copypaste") result blocks back from a log."""
from typing import Dict

__all__ = ["parse_copypaste"]


def parse_copypaste(log: str, task: str) -> Dict[str, float]:
    """The metrics of ``task`` from the first copypaste block of ``log`` for it.

    A block is three lines ``copypaste: Task: <task>``, ``copypaste: k1,k2,...`` and
    ``copypaste: v1,v2,...``.

    Raises:
        ValueError: no block for ``task``.
    """
    lines = [ln.split("copypaste: ", 1)[1] for ln in log.splitlines() if "copypaste: " in ln]
    for i, ln in enumerate(lines[:-2]):
        if ln.strip() == f"Task: {task}":
            keys, values = lines[i + 1].strip().split(","), lines[i + 2].strip().split(",")
            return {k: float(v) for k, v in zip(keys, values)}
    raise ValueError(f"no copypaste results for task {task!r} in the log")
