"""OV-COCO detection evaluation: box AP50 over the novel, base and all classes.

The authors' ``CocoDatasetOV.evaluate`` runs COCO's bbox evaluation with ``maxDets`` (100, 300,
1000), takes each class's AP at IoU 0.5, area "all" and the last ``maxDets`` entry, and averages
it over the novel classes (the paper's number), the base classes and all classes. Classes without
ground truth have no AP and are skipped by the means.
"""
from typing import Optional, Sequence, Union

import numpy as np
from detectron2.data import DatasetCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.utils.logger import create_small_table

__all__ = ["OVCOCOEvaluator", "per_class_ap50"]

#: ``maxDets`` of the authors' evaluation (COCOeval needs at least 3; AP uses the last one).
OV_COCO_MAX_DETS = (100, 300, 1000)


def per_class_ap50(coco_eval) -> np.ndarray:
    """Per-class AP at IoU 0.5, area "all" and the last ``maxDets``, from an accumulated COCOeval.

    Args:
        coco_eval (COCOeval): after ``evaluate()`` and ``accumulate()``.
    Returns:
        ndarray: (K,) AP in [0, 1] in the order of ``coco_eval.params.catIds``; NaN for classes
        without ground truth (COCO's precision is -1 there).
    """
    params = coco_eval.params
    iou_idx = np.flatnonzero(np.isclose(params.iouThrs, 0.5))
    if iou_idx.size == 0:
        raise ValueError(f"COCOeval has no IoU threshold 0.5: {params.iouThrs}")
    area_idx = list(params.areaRngLbl).index("all")
    # precision: (IoU thresholds, recall thresholds, classes, area ranges, maxDets)
    precision = coco_eval.eval["precision"][iou_idx[0], :, :, area_idx, -1]  # (R, K)
    aps = np.full(precision.shape[1], np.nan)
    for k in range(precision.shape[1]):
        p = precision[:, k]
        p = p[p > -1]
        if p.size:
            aps[k] = p.mean()
    return aps


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


class OVCOCOEvaluator(COCOEvaluator):
    """:class:`COCOEvaluator` that also reports ``AP50_novel``, ``AP50_base`` and ``AP50_all``.

    The three keys (in %, NaN when nothing can be computed) are added to the "bbox" (and "segm")
    results next to Detectron2's AP, AP50, ..., and per-category AP. Per class, AP50 is COCO's
    101-point interpolated precision at IoU 0.5 for area "all" and the last ``maxDets``; the means
    skip classes without ground truth.

    Args:
        dataset_name (str): a registered COCO-format dataset whose metadata has ``thing_classes``
            and, unless given below, ``base_classes`` and ``novel_classes`` (names from
            ``thing_classes``).
        tasks, distributed, output_dir: as in :class:`COCOEvaluator`.
        max_dets_per_image (int or sequence[int]): COCOeval's ``maxDets`` (at least 3 values, AP
            is read at the last); an int ``n`` means Detectron2's ``[1, 10, n]``.
            Default: ``(100, 300, 1000)``, as the authors.
        use_fast_impl (bool): use Detectron2's compiled COCOeval (not built here). Default: False.
        base_classes, novel_classes (list[str] or None): override the metadata's split.
        **kwargs: other keyword arguments of :class:`COCOEvaluator`.
    """

    def __init__(
        self,
        dataset_name: str,
        tasks=None,
        distributed: bool = True,
        output_dir: Optional[str] = None,
        *,
        max_dets_per_image: Union[int, Sequence[int], None] = OV_COCO_MAX_DETS,
        use_fast_impl: bool = False,
        base_classes: Optional[Sequence[str]] = None,
        novel_classes: Optional[Sequence[str]] = None,
        **kwargs,
    ):
        super().__init__(
            dataset_name, tasks, distributed, output_dir, use_fast_impl=use_fast_impl, **kwargs
        )
        if max_dets_per_image is None:
            max_dets_per_image = OV_COCO_MAX_DETS
        if isinstance(max_dets_per_image, int):
            max_dets_per_image = [1, 10, max_dets_per_image]
        max_dets_per_image = [int(m) for m in max_dets_per_image]
        if len(max_dets_per_image) < 3:
            raise ValueError(f"max_dets_per_image needs at least 3 values: {max_dets_per_image}")
        self._max_dets_per_image = max_dets_per_image

        if not hasattr(self._metadata, "thing_classes"):
            # plain register_coco_instances sets the class metadata only when the data is loaded
            DatasetCatalog.get(dataset_name)
        thing_classes = list(self._metadata.thing_classes)
        if base_classes is None:
            base_classes = self._metadata.get("base_classes")
        if novel_classes is None:
            novel_classes = self._metadata.get("novel_classes")
        if base_classes is None or novel_classes is None:
            raise ValueError(
                f"{dataset_name} has no base/novel split: set base_classes and novel_classes in "
                "its metadata or pass them to OVCOCOEvaluator"
            )
        self._split_index = {}
        for split, names in (("novel", novel_classes), ("base", base_classes)):
            unknown = sorted(set(names) - set(thing_classes))
            if unknown:
                raise ValueError(
                    f"{split} classes not in {dataset_name}'s thing_classes: {unknown}"
                )
            self._split_index[split] = [thing_classes.index(n) for n in names]
        overlap = sorted(set(base_classes) & set(novel_classes))
        if overlap:
            raise ValueError(f"classes both base and novel: {overlap}")
        self._split_index["all"] = list(range(len(thing_classes)))

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        results = super()._derive_coco_results(coco_eval, iou_type, class_names=class_names)
        if iou_type not in ("bbox", "segm"):
            return results
        if coco_eval is None:
            ov_results = {f"AP50_{split}": float("nan") for split in self._split_index}
        else:
            aps = per_class_ap50(coco_eval)
            num_classes = len(self._split_index["all"])
            assert aps.shape[0] == num_classes, (
                f"COCOeval has {aps.shape[0]} classes, the dataset {num_classes}"
            )
            ov_results = {
                f"AP50_{split}": _nanmean(aps[idx]) * 100
                for split, idx in self._split_index.items()
            }
        self._logger.info(f"Open-vocabulary {iou_type} AP50: \n" + create_small_table(ov_results))
        results.update(ov_results)
        return results
