"""Region-recognition evaluation (paper Table 2, docs/region_evaluation.md §1): top-1 / top-5 mean
class accuracy.

Region features (boxes, masks, crops) of every image are classified against the text embeddings
of all classes; accuracy is computed per class and averaged over the classes present, separately
for things and stuff. When the model also returns its embedding of the whole image, the global
ability is reported too: multi-label zero-shot mean average precision over the thing classes
present in the images (docs/region_evaluation.md §8).
"""
import itertools
import logging
from collections import OrderedDict
from typing import Dict, Optional

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..structures import Vocabulary, cosine_logits

__all__ = [
    "RegionRecognitionEvaluator",
    "mean_class_accuracy",
    "average_precision",
    "mean_average_precision",
]

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


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Non-interpolated average precision of one class over N items (docs/region_evaluation.md
    §8): ``sum_n (R_n - R_{n-1}) P_n`` over the distinct scores in decreasing order, equal scores
    forming one threshold (the definition of scikit-learn's ``average_precision_score``, which is
    not a dependency of this project).

    Args:
        scores (ndarray): (N,) scores, higher = more confident.
        positives (ndarray): (N,) bool ground truth.
    Returns:
        float in [0, 1]; NaN when there is no positive.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    num_pos = int(positives.sum())
    if num_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    scores, positives = scores[order], positives[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # last item of each threshold
    tp = np.cumsum(positives)[last]  # (T,) true positives at or above each threshold
    precision = tp / (last + 1)
    recall_step = np.diff(np.r_[0, tp]) / num_pos
    return float((recall_step * precision).sum())


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Multi-label mAP (in %): :func:`average_precision` of every class (column) with at least
    one positive, averaged.

    Args:
        scores (ndarray): (N, K) image-class scores.
        targets (ndarray): (N, K) bool, class k present in image n.
    Returns:
        float in [0, 100]; NaN when no class has a positive.
    """
    classes = np.flatnonzero(np.asarray(targets).any(axis=0))
    if len(classes) == 0:
        return float("nan")
    return float(np.mean([average_precision(scores[:, k], targets[:, k]) for k in classes]) * 100)


class RegionRecognitionEvaluator(DatasetEvaluator):
    """Classify region features with a vocabulary; report mean class accuracy.

    Inputs come from :class:`clipself.data.mappers.RegionEvalMapper` (``labels``, ``isthing``),
    outputs from :class:`clipself.distill.CLIPSelf` in eval mode (``boxes``, ``masks``,
    ``crops`` features). Works under multiple processes (results are gathered).

    Global metrics of the evaluated model: ``crops_top{1,5}`` (its own ``encode_image`` of the
    crops) and, when the records carry ``image_labels`` (thing classes present) and the outputs
    ``image`` (the whole image's embedding), ``image_mAP``: multi-label zero-shot mAP of the
    image embeddings against the vocabulary, over the thing classes present in the images
    (docs/region_evaluation.md §8).

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
        self._images = []  # one (scores (K,), thing class ids (T,)) per image with an embedding
        self._images_without_regions = 0

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            if "image" in out and "image_labels" in inp:  # also when no region is left
                scores = cosine_logits(out["image"].float().cpu()[None], self._text)[0]  # (K,)
                self._images.append((scores, inp["image_labels"].cpu()))
            if len(inp["labels"]) == 0:
                self._images_without_regions += 1  # all regions filtered out (size limits)
                continue
            row = {"labels": inp["labels"].cpu(), "isthing": inp["isthing"].cpu()}
            for kind in ("boxes", "masks", "crops"):
                logits = cosine_logits(out[kind].float().cpu(), self._text)  # (R, K)
                row[kind] = logits.topk(min(5, logits.shape[1]), dim=1).indices
            self._rows.append(row)

    def _image_map(self, images) -> float:
        """``image_mAP`` of (scores (K,), thing ids) pairs: :func:`mean_average_precision`."""
        scores = torch.stack([s for s, _ in images]).double().numpy()  # (N, K)
        targets = np.zeros(scores.shape, dtype=bool)  # (N, K)
        for n, (_, ids) in enumerate(images):
            targets[n, ids.numpy()] = True
        return mean_average_precision(scores, targets)

    def evaluate(self) -> Optional[Dict]:
        rows, skipped, images = self._rows, self._images_without_regions, self._images
        if self._distributed:
            comm.synchronize()
            rows = list(itertools.chain(*comm.gather(rows, dst=0)))
            skipped = sum(comm.gather(skipped, dst=0) or [0])
            images = list(itertools.chain(*comm.gather(images, dst=0)))
            if not comm.is_main_process():
                return None
        if skipped:
            logger.info(f"RegionRecognitionEvaluator: {skipped} image(s) had no region left "
                        "after the mapper's size filters and were skipped")
        if not rows:
            logger.warning("RegionRecognitionEvaluator received no regions")
            res = {"image_mAP": self._image_map(images)} if images else {}
            return {"region_recognition": res}
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
        if images:
            res["image_mAP"] = self._image_map(images)
        res["num_thing_regions"] = float(isthing.sum())
        res["num_stuff_regions"] = float((~isthing).sum())
        if images:
            res["num_images"] = float(len(images))
        return {"region_recognition": res}
