"""Detectron2's ``DatasetMapper`` (F-ViT and the baseline detectors), with errors that name the
file: a missing, truncated or corrupt image or annotation file of a record raises an error that
says which record's files to check."""
from detectron2.data import DatasetMapper as _D2DatasetMapper

__all__ = ["DatasetMapper"]


class DatasetMapper(_D2DatasetMapper):
    """``detectron2.data.DatasetMapper`` (same arguments); a file error names the record's
    image (and its semantic map, if any)."""

    def __call__(self, dataset_dict: dict) -> dict:
        try:
            return super().__call__(dataset_dict)
        except OSError as e:  # PIL: missing, truncated ("image file is truncated"), corrupt
            files = [dataset_dict.get(k) for k in ("file_name", "sem_seg_file_name")]
            files = ", ".join(f for f in files if f)
            raise type(e)(f"Cannot read {files}: {e}. Is the file missing, truncated or "
                          f"corrupt? Re-download or re-create it.") from e
