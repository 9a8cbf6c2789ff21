"""Mask AP for panoptic datasets whose thing classes are not the first contiguous ids.

Detectron2's ``COCOEvaluator`` maps predicted contiguous class ids back to dataset category ids
only when the things are contiguous ids ``0..N-1`` (true for COCO panoptic, where the 80 things come
first among the 133 classes). ADE20K-150 panoptic interleaves its 100 things with the 50 stuff
classes (contiguous id = index among the 150), so the parent asserts. ``InstanceSegEvaluator``
does the same evaluation with any injective ``thing_dataset_id_to_contiguous_id``; predictions of
classes that are not things are dropped (they have no category in the instance json).
"""
import itertools
from typing import Dict, List

from detectron2.evaluation import COCOEvaluator

__all__ = ["InstanceSegEvaluator", "unmap_category_ids"]


def unmap_category_ids(results: List[Dict], dataset_id_to_contiguous_id: Dict[int, int]) -> List:
    """COCO-format predictions with contiguous ``category_id`` -> dataset ids.

    Args:
        results (list[dict]): COCO result dicts (``category_id`` = contiguous id).
        dataset_id_to_contiguous_id (dict[int, int]): the thing mapping of the metadata.
    Returns:
        list[dict]: the predictions of thing classes, with dataset category ids (new dicts).
    """
    reverse = {int(v): int(k) for k, v in dataset_id_to_contiguous_id.items()}
    if len(reverse) != len(dataset_id_to_contiguous_id):
        raise ValueError("thing_dataset_id_to_contiguous_id is not injective")
    return [dict(r, category_id=reverse[r["category_id"]]) for r in results
            if r["category_id"] in reverse]


class _WithoutIdMap:
    """Read-only view of a Metadata without ``thing_dataset_id_to_contiguous_id``."""

    def __init__(self, metadata):
        self._metadata = metadata

    def get(self, key, default=None):
        if key == "thing_dataset_id_to_contiguous_id":
            return default
        return self._metadata.get(key, default)

    def __getattr__(self, key):
        if key == "thing_dataset_id_to_contiguous_id":
            raise AttributeError(key)
        return getattr(self._metadata, key)


class InstanceSegEvaluator(COCOEvaluator):
    """``COCOEvaluator`` for datasets whose thing ids are any subset of the contiguous ids."""

    def _eval_predictions(self, predictions, img_ids=None):
        table = getattr(self._metadata, "thing_dataset_id_to_contiguous_id", None)
        if table is None:
            return super()._eval_predictions(predictions, img_ids=img_ids)
        instances = list(itertools.chain(*[p["instances"] for p in predictions]))
        unmapped = [{"instances": unmap_category_ids(instances, table)}]
        metadata = self._metadata
        self._metadata = _WithoutIdMap(metadata)  # the ids are already dataset ids
        try:
            return super()._eval_predictions(unmapped, img_ids=img_ids)
        finally:
            self._metadata = metadata
