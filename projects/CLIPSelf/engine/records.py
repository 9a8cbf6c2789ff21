"""Predictor outputs as JSON-ready records (what ``tools/demo.py`` writes next to its pictures).

Every record names its class by the vocabulary (``class``, ``class_id``) and says whether the
class was seen in training (``seen``; detections: ``novel`` = not seen, OV-COCO's term).
"""
from typing import Dict, List, Optional, Sequence

import torch

from ..structures import Vocabulary

__all__ = ["detection_records", "segment_records", "semantic_records"]


def detection_records(
    instances,
    vocabulary: Vocabulary,
    *,
    score_thresh: float = 0.0,
    max_dets: Optional[int] = None,
) -> List[Dict]:
    """Detections of one image, best first.

    Args:
        instances (Instances): ``pred_boxes``, ``scores``, ``pred_classes`` (any device).
        vocabulary (Vocabulary): the classes ``pred_classes`` index.
        score_thresh (float): keep scores >= this.
        max_dets (int): keep at most this many (None = all).
    Returns:
        list[dict]: ``box`` [x0, y0, x1, y1] (input-image pixels), ``class``, ``class_id``,
        ``score``, ``novel``.
    """
    seen = vocabulary.seen_mask.tolist()
    boxes = instances.pred_boxes.tensor.detach().cpu().tolist()
    scores = instances.scores.detach().cpu().tolist()
    classes = instances.pred_classes.detach().cpu().tolist()
    records = [
        {"box": [round(float(v), 2) for v in box], "class": vocabulary.class_names[c],
         "class_id": int(c), "score": round(float(s), 4), "novel": not seen[c]}
        for box, s, c in zip(boxes, scores, classes)
        if s >= score_thresh
    ]
    records.sort(key=lambda r: -r["score"])
    return records if max_dets is None else records[: max(0, int(max_dets))]


def segment_records(panoptic_seg: torch.Tensor, segments_info: Sequence[Dict],
                    vocabulary: Vocabulary) -> List[Dict]:
    """Panoptic segments of one image, by id.

    Args:
        panoptic_seg (Tensor): (H, W) int segment ids (0 = void).
        segments_info (list[dict]): ``id``, ``category_id`` (vocabulary index), ``isthing``.
        vocabulary (Vocabulary): the classes ``category_id`` indexes.
    Returns:
        list[dict]: ``id``, ``class``, ``class_id``, ``isthing``, ``area`` (pixels), ``seen``.
    """
    seen = vocabulary.seen_mask.tolist()
    ids = panoptic_seg.detach().cpu().flatten().long()
    top = max([int(s["id"]) for s in segments_info] + [int(ids.max()) if ids.numel() else 0])
    areas = torch.bincount(ids.clamp(min=0), minlength=top + 1).tolist()
    return [
        {"id": int(s["id"]), "class": vocabulary.class_names[int(s["category_id"])],
         "class_id": int(s["category_id"]), "isthing": bool(s["isthing"]),
         "area": int(areas[int(s["id"])]), "seen": seen[int(s["category_id"])]}
        for s in sorted(segments_info, key=lambda s: int(s["id"]))
    ]


def semantic_records(labels: torch.Tensor, vocabulary: Vocabulary) -> List[Dict]:
    """Per-class pixel counts of a (H, W) label map, largest first (absent classes left out).

    Returns:
        list[dict]: ``class``, ``class_id``, ``pixels``, ``seen``.
    """
    seen = vocabulary.seen_mask.tolist()
    K = vocabulary.num_classes
    counts = torch.bincount(labels.detach().cpu().flatten().long(), minlength=K).tolist()
    records = [{"class": vocabulary.class_names[k], "class_id": k, "pixels": int(c),
                "seen": seen[k]} for k, c in enumerate(counts[:K]) if c > 0]
    records.sort(key=lambda r: (-r["pixels"], r["class_id"]))
    return records
