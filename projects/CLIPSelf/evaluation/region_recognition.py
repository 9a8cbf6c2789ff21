"""Region-recognition evaluation (paper Table 2, docs/region_evaluation.md §1): top-1 / top-5 mean
class accuracy.

Region features (boxes, masks, crops) of every image are classified against the text embeddings
of all classes; accuracy is computed per class and averaged over the classes present, separately
for things and stuff.
"""
import itertools
import logging
from collections import OrderedDict
from typing import Dict, Optional

import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..structures import Vocabulary, cosine_logits

__all__ = ["RegionRecognitionEvaluator", "mean_class_accuracy"]

logger = logging.getLogger(__name__)

#: (output key, feature type, subset) reported by the evaluator; the paper's columns are
#: Boxes = boxes/thing, Thing masks = masks/thing, Stuff masks = masks/stuff, and the image-crop
#: baseline = crops/thing (and crops/stuff).
REPORTED = (
    ("boxes", "boxes", "thing"),
    ("thing_masks", "masks", "thing"),
    ("stuff_masks", "masks", "stuff"),
    ("crops", "crops", "thing"),
    ("stuff_crops", "crops", "stuff"),
    ("stuff_boxes", "boxes", "stuff"),
)


def mean_class_accuracy(
    topk: torch.Tensor, labels: torch.Tensor, k: int, num_classes: int
) -> float:
    """Per-class top-k accuracy averaged over the classes present (in %).

    Args:
        topk (Tensor): (R, >=k) predicted class ids, best first.
        labels (Tensor): (R,) ground-truth class ids.
        k (int): 1 or 5.
        num_classes (int): K.
    Returns:
        float in [0, 100]; NaN when there are no regions.
    """
    if labels.numel() == 0:
        return float("nan")
    hit = (topk[:, :k] == labels[:, None]).any(dim=1).double()  # (R,)
    correct = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, hit)
    count = torch.zeros(num_classes, dtype=torch.float64).index_add_(
        0, labels, torch.ones_like(hit)
    )
    present = count > 0
    per_class = correct[present] / count[present]
    # The authors cast the per-class means to fp16 before averaging (docs/region_evaluation.md §5):
    # we keep fp64.
    return float(per_class.mean() * 100)


class RegionRecognitionEvaluator(DatasetEvaluator):
    """Classify region features with a vocabulary; report mean class accuracy.

    Inputs come from :class:`clipself.data.mappers.RegionEvalMapper` (``labels``, ``isthing``),
    outputs from :class:`clipself.distill.CLIPSelf` in eval mode (``boxes``, ``masks``,
    ``crops`` features). Works under multiple processes (results are gathered).

    Args:
        dataset_name (str): a registered panoptic dataset (its ``stuff_classes`` = all classes).
        vocabulary (Vocabulary): its classes in the dataset's contiguous order (e.g.
            ``clipself.data.dataset_vocabulary(dataset_name, classes="stuff_classes", ...)``).
        distributed (bool): gather results from all processes.
    """

    def __init__(self, dataset_name: str, vocabulary: Vocabulary, *, distributed: bool = True):
        self._dataset_name = dataset_name
        self._metadata = MetadataCatalog.get(dataset_name)
        self._distributed = distributed
        self.set_vocabulary(vocabulary)
        self.reset()

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    def set_vocabulary(self, vocabulary: Vocabulary) -> None:
        """Classify against ``vocabulary``: the dataset's classes, in its contiguous order."""
        names = list(self._metadata.stuff_classes)
        if list(vocabulary.class_names) != names:
            raise ValueError(
                f"{self._dataset_name} has {len(names)} classes but the vocabulary lists "
                f"{vocabulary.num_classes} others (or in another order); build it from the "
                "dataset's stuff_classes"
            )
        self._vocabulary = vocabulary
        self._text = vocabulary.class_embeddings.float()  # (K, D)

    @property
    def class_names(self):
        """The K class names, in the order of the text embeddings."""
        return list(self._vocabulary.class_names)

    @property
    def text_embeddings(self) -> torch.Tensor:
        """(K, D) class embeddings the region features are classified against."""
        return self._text

    def reset(self):
        self._rows = []  # one dict per image: labels, isthing, top5 per feature type
        self._images_without_regions = 0

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            if len(inp["labels"]) == 0:
                self._images_without_regions += 1  # all regions filtered out (size limits)
                continue
            row = {"labels": inp["labels"].cpu(), "isthing": inp["isthing"].cpu()}
            for kind in ("boxes", "masks", "crops"):
                logits = cosine_logits(out[kind].float().cpu(), self._text)  # (R, K)
                row[kind] = logits.topk(min(5, logits.shape[1]), dim=1).indices
            self._rows.append(row)

    def evaluate(self) -> Optional[Dict]:
        rows, skipped = self._rows, self._images_without_regions
        if self._distributed:
            comm.synchronize()
            rows = list(itertools.chain(*comm.gather(rows, dst=0)))
            skipped = sum(comm.gather(skipped, dst=0) or [0])
            if not comm.is_main_process():
                return None
        if skipped:
            logger.info(f"RegionRecognitionEvaluator: {skipped} image(s) had no region left "
                        "after the mapper's size filters and were skipped")
        if not rows:
            logger.warning("RegionRecognitionEvaluator received no regions")
            return {"region_recognition": {}}
        labels = torch.cat([r["labels"] for r in rows])
        isthing = torch.cat([r["isthing"] for r in rows])
        topk = {kind: torch.cat([r[kind] for r in rows]) for kind in ("boxes", "masks", "crops")}
        num_classes = self._vocabulary.num_classes
        res = OrderedDict()
        for name, kind, subset in REPORTED:
            sel = isthing if subset == "thing" else ~isthing
            for k in (1, 5):
                res[f"{name}_top{k}"] = mean_class_accuracy(
                    topk[kind][sel], labels[sel], k, num_classes
                )
        res["num_thing_regions"] = float(isthing.sum())
        res["num_stuff_regions"] = float((~isthing).sum())
        return {"region_recognition": res}
