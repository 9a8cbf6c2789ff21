"""Where datasets live and how missing files are reported.

Every registered dataset is rooted at ``$DETECTRON2_DATASETS`` (default ``./datasets``), exactly
like Detectron2's built-in datasets. Nothing here touches the disk at import time: paths are
checked when a dataset is loaded, and a missing file raises an error that names the path and the
command that creates it.
"""
import os

__all__ = ["dataset_root", "require_path"]


def dataset_root() -> str:
    """The datasets root: ``$DETECTRON2_DATASETS`` or ``datasets`` (relative to the working dir)."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def require_path(path: str, how_to_make: str) -> str:
    """Return ``path`` if it exists, else raise ``FileNotFoundError`` naming it and the fix.

    Args:
        path (str): a file or directory a dataset needs.
        how_to_make (str): the command or instruction that creates it, e.g.
            ``"python datasets/prepare_ov_coco.py"``.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} does not exist. {how_to_make} "
            f"(datasets root = $DETECTRON2_DATASETS = {dataset_root()!r}; see datasets/README.md)"
        )
    return path
