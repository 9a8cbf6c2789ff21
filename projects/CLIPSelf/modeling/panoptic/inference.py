"""Open-vocabulary scoring and Mask2Former-style post-processing (docs/segmentation.md §3.5, §5,
§6).

Shape shorthand in this module:
    Q: queries of one image, K: classes (the void / no-object class is index K),
    H/W: mask size (after resizing to the output image), D: CLIP embedding dim,
    h/w: CLIP dense-feature grid.

All functions work on one image. Outputs follow Detectron2's evaluator contracts:
    - ``semantic_inference`` -> (K, H, W) scores for ``outputs["sem_seg"]`` (SemSegEvaluator
      takes the argmax over K).
    - ``panoptic_inference`` -> ``(panoptic_seg (H, W) int32, segments_info)`` for
      ``outputs["panoptic_seg"]`` (COCOPanopticEvaluator; 0 = void, ``category_id`` contiguous,
      ``isthing`` selects the thing/stuff id map of the metadata).
    - ``instance_inference`` -> ``Instances`` for ``outputs["instances"]`` (COCOEvaluator).
"""
from typing import Collection, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.structures import Boxes, Instances

from ..dense_ops import pool_masks

__all__ = [
    "mask_pool",
    "semantic_inference",
    "panoptic_inference",
    "instance_inference",
]


def mask_pool(dense: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """CLIP-score mask pooling on a dense CLIP map (docs/segmentation.md §5), L2-normalised.

    Order: the masks (probabilities or binary) are first resized to the feature grid h x w
    (bilinear, ``align_corners=False``, no antialiasing), then binarised with ``> threshold``
    (so for ``sigmoid`` probabilities and 0.5, ``logit > 0`` semantics at the grid points), then
    ``f_q = sum_p m_q(p) F(p) / (sum_p m_q(p) + 1e-12)`` and ``f_q / ||f_q||``. A mask with no
    grid point above the threshold gives a zero vector.

    Args:
        dense (Tensor): (D, h, w) dense features (normally already L2-normalised per location).
        masks (Tensor): (Q, H, W) mask probabilities in [0, 1] or binary masks.
        threshold (float): binarisation threshold after resizing.
    Returns:
        Tensor: (Q, D) unit-norm (or zero) embeddings in the dtype of ``dense``.
    """
    D, h, w = dense.shape
    m = masks.to(dense.device, torch.float32)[:, None]  # (Q, 1, H, W)
    if tuple(m.shape[-2:]) != (h, w):
        m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
    binary = (m[:, 0] > threshold).to(dense.dtype)  # (Q, h, w)
    pooled = pool_masks(dense[None], [binary], eps=1e-12)  # (Q, D)
    return F.normalize(pooled, dim=-1, eps=1e-12)


def semantic_inference(mask_cls: torch.Tensor, mask_pred: torch.Tensor) -> torch.Tensor:
    """``S[c] = sum_q softmax(mask_cls_q)[c] * sigmoid(mask_pred_q)``, void excluded.

    Args:
        mask_cls (Tensor): (Q, K+1) class logits or log-probabilities.
        mask_pred (Tensor): (Q, H, W) mask logits.
    Returns:
        Tensor: (K, H, W) scores.
    """
    probs = mask_cls.float().softmax(-1)[:, :-1]  # (Q, K)
    return torch.einsum("qc,qhw->chw", probs, mask_pred.float().sigmoid())


def _thing_table(thing_ids: Collection[int], num_classes: int, device) -> torch.Tensor:
    """(K,) bool lookup table of thing classes."""
    table = torch.zeros(num_classes, dtype=torch.bool, device=device)
    ids = [int(i) for i in thing_ids if 0 <= int(i) < num_classes]
    if ids:
        table[torch.as_tensor(ids, device=device)] = True
    return table


def panoptic_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    *,
    num_classes: int,
    thing_ids: Collection[int],
    object_mask_threshold: float = 0.0,
    overlap_threshold: float = 0.8,
) -> Tuple[torch.Tensor, List[Dict]]:
    """Mask2Former panoptic merge (docs/segmentation.md §3.5).

    1. ``score, label = max softmax(mask_cls)``; keep queries with ``label != K`` and
       ``score > object_mask_threshold``.
    2. Each pixel goes to the kept query with the highest ``score * sigmoid(mask)``.
    3. A query becomes a segment if the pixels it wins inside its own ``sigmoid >= 0.5`` area
       are non-empty and cover at least ``overlap_threshold`` of that area.
    4. Stuff segments of the same class are merged (the first one, in query order, gives the
       id). Segment ids are 1, 2, ... in query order; 0 is void.

    Args:
        mask_cls (Tensor): (Q, K+1) class logits or log-probabilities.
        mask_pred (Tensor): (Q, H, W) mask logits.
        num_classes (int): K.
        thing_ids (collection[int]): contiguous ids of thing classes, e.g.
            ``metadata.thing_dataset_id_to_contiguous_id.values()``.
        object_mask_threshold (float): minimum class probability (ODISE 0.0, Mask2Former 0.8).
        overlap_threshold (float): minimum kept fraction of a query's own mask.
    Returns:
        tuple: ``panoptic_seg`` (H, W) int32 segment ids and ``segments_info``, a list of
        ``{"id": int, "category_id": int, "isthing": bool}`` sorted by id.
    """
    H, W = mask_pred.shape[-2:]
    device = mask_pred.device
    panoptic_seg = torch.zeros((H, W), dtype=torch.int32, device=device)
    scores, labels = mask_cls.float().softmax(-1).max(-1)  # (Q,), (Q,)
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    if not bool(keep.any()):
        return panoptic_seg, []
    cur_scores, cur_classes = scores[keep], labels[keep]  # (Q',)
    cur_masks = mask_pred[keep].float().sigmoid()  # (Q', H, W)
    n = cur_masks.shape[0]

    owner = (cur_scores[:, None, None] * cur_masks).argmax(0)  # (H, W) winning query
    own_fg = cur_masks.gather(0, owner[None])[0] >= 0.5  # (H, W) winner's own mask covers it
    won_area = torch.bincount(owner[own_fg], minlength=n)  # (Q',)
    own_area = (cur_masks >= 0.5).flatten(1).sum(1)  # (Q',)
    ratio = won_area.float() / own_area.clamp(min=1).float()
    is_segment = (won_area > 0) & (own_area > 0) & (ratio >= overlap_threshold)  # (Q',)

    isthing = _thing_table(thing_ids, num_classes, device)[cur_classes]  # (Q',)
    # stuff segments of one class share the id of the first of them (in query order)
    order = torch.arange(n, device=device)
    stuff_seg = is_segment & ~isthing
    first_of_class = torch.full((num_classes,), n, dtype=torch.int64, device=device)
    first_of_class.scatter_reduce_(
        0, cur_classes[stuff_seg], order[stuff_seg], reduce="amin", include_self=True
    )
    representative = torch.where(stuff_seg, first_of_class[cur_classes], order)  # (Q',)
    opens_segment = is_segment & (representative == order)  # (Q',) gets a new id
    new_id = torch.cumsum(opens_segment.to(torch.int64), 0)  # (Q',) 1-based at openers
    seg_id = torch.where(is_segment, new_id[representative], 0)  # (Q',) 0 = dropped

    panoptic_seg = torch.where(own_fg, seg_id[owner], 0).to(torch.int32)  # (H, W)
    openers = opens_segment.nonzero()[:, 0].tolist()
    segments_info = [
        {
            "id": int(new_id[q]),
            "category_id": int(cur_classes[q]),
            "isthing": bool(isthing[q]),
        }
        for q in openers
    ]
    return panoptic_seg, segments_info


def instance_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    *,
    num_classes: int,
    thing_ids: Optional[Collection[int]] = None,
    topk: int = 100,
) -> Instances:
    """Top-k (query, class) pairs as instances (docs/segmentation.md §3.5).

    Scores are ``softmax(mask_cls)[q, c]`` over all Q x K pairs (void excluded); the top
    ``topk`` are kept (sorted by score), then restricted to ``thing_ids`` when given (panoptic
    datasets). Masks are ``logit > 0``; the score is multiplied by the mean ``sigmoid`` inside
    the mask. Boxes are zeros (mask AP only).

    Args:
        mask_cls (Tensor): (Q, K+1) class logits or log-probabilities.
        mask_pred (Tensor): (Q, H, W) mask logits.
        num_classes (int): K.
        thing_ids (collection[int], optional): contiguous thing ids to keep.
        topk (int): number of (query, class) pairs kept before the thing filter.
    Returns:
        Instances: image size (H, W), fields ``pred_masks`` (R, H, W) bool, ``pred_boxes``
        zeros, ``scores`` (R,), ``pred_classes`` (R,) int64 contiguous ids.
    """
    Q, H, W = mask_pred.shape
    scores = mask_cls.float().softmax(-1)[:, :num_classes]  # (Q, K)
    k = min(topk, scores.numel())
    top_scores, flat_idx = scores.flatten().topk(k, sorted=True)  # (k,) q-major flat index
    classes = flat_idx % num_classes
    query = torch.div(flat_idx, num_classes, rounding_mode="floor")
    if thing_ids is not None:
        is_thing = _thing_table(thing_ids, num_classes, scores.device)[classes]
        top_scores, classes, query = top_scores[is_thing], classes[is_thing], query[is_thing]
    logits = mask_pred[query].float()  # (R, H, W)
    masks = logits > 0
    probs = logits.sigmoid().flatten(1)  # (R, H*W)
    fg = masks.flatten(1).float()
    mask_scores = (probs * fg).sum(1) / (fg.sum(1) + 1e-6)  # (R,)

    result = Instances((H, W))
    result.pred_masks = masks
    result.pred_boxes = Boxes(torch.zeros(masks.shape[0], 4, device=mask_pred.device))
    result.scores = top_scores * mask_scores
    result.pred_classes = classes
    return result
