"""Semantic-segmentation evaluators chosen by the dataset's ``evaluator_type``.

``"sem_seg"`` datasets use Detectron2's :class:`SemSegEvaluator`; ``"sem_seg_background"`` ones
(``voc_2012_val_background_sem_seg``: 20 VOC classes + background as the last class) use
:class:`VOCbEvaluator`, which counts every prediction of a class index >= the background index as
background, so that a model may describe the background with several extra class names.
"""
from typing import Optional

import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import SemSegEvaluator

__all__ = ["VOCbEvaluator", "evaluator_for_dataset"]


class VOCbEvaluator(SemSegEvaluator):
    """:class:`SemSegEvaluator` for datasets whose last class is the background.

    The prediction of a pixel is the argmax of its scores over all model classes; classes at
    index >= ``background_id`` (= ``len(stuff_classes) - 1``, 20 for VOC-21) become
    ``background_id``. Implemented by replacing those score channels by their maximum before
    the usual argmax, so the metrics (mIoU, fwIoU, mACC, pACC, boundary IoU) are Detectron2's.
    """

    def __init__(self, dataset_name: str, distributed: bool = True,
                 output_dir: Optional[str] = None, **kwargs):
        super().__init__(dataset_name, distributed, output_dir, **kwargs)
        self.background_id = self._num_classes - 1

    def merge_background(self, scores: torch.Tensor) -> torch.Tensor:
        """(K', H, W) class scores -> (background_id + 1, H, W); channel ``background_id`` is
        the maximum over channels ``background_id..K'-1``."""
        bg = self.background_id
        if scores.shape[0] <= bg:
            raise ValueError(f"{self._dataset_name}: {scores.shape[0]} score channels, expected "
                             f"at least {bg + 1} (the background is class {bg})")
        return torch.cat([scores[:bg], scores[bg:].max(dim=0, keepdim=True).values], dim=0)

    def process(self, inputs, outputs):
        outputs = [dict(o, sem_seg=self.merge_background(o["sem_seg"])) for o in outputs]
        super().process(inputs, outputs)


def evaluator_for_dataset(dataset_name: str, output_dir: Optional[str] = None,
                          distributed: bool = True) -> SemSegEvaluator:
    """The semantic-segmentation evaluator for ``dataset_name`` by its metadata ``evaluator_type``:
    ``"sem_seg"`` -> :class:`SemSegEvaluator`, ``"sem_seg_background"`` -> :class:`VOCbEvaluator`.
    """
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type")
    if evaluator_type == "sem_seg":
        return SemSegEvaluator(dataset_name, distributed=distributed, output_dir=output_dir)
    if evaluator_type == "sem_seg_background":
        return VOCbEvaluator(dataset_name, distributed=distributed, output_dir=output_dir)
    raise ValueError(f"{dataset_name}: evaluator_type {evaluator_type!r} is not a semantic-"
                     "segmentation type ('sem_seg' or 'sem_seg_background')")
