"""Set criterion of the mask-classification head (docs/segmentation.md §3.4).

Shape shorthand in this module:
    B: images, Q: queries, K: classes (the no-object class is index K), N: matched
    (query, segment) pairs over the batch, P: sampled points, H/W: prediction mask size.

Losses, per decoder output (the final one and each entry of "aux_outputs", whose keys get the
suffix ``_{i}``):
    - ``loss_ce``: cross-entropy over K+1 classes for all queries; unmatched queries target the
      no-object class, whose weight is ``eos_coef``.
    - ``loss_mask`` / ``loss_dice``: sigmoid BCE and dice of matched masks, on ``num_points``
      points chosen by PointRend importance sampling (uncertainty ``-|logit|``), summed over
      masks and divided by the number of ground-truth masks in the batch (averaged over
      processes, at least 1).
"""
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.projects.point_rend.point_features import (
    get_uncertain_point_coords_with_randomness,
    point_sample,
)
from torch import nn

__all__ = [
    "sigmoid_ce_loss",
    "dice_loss",
    "calculate_uncertainty",
    "make_weight_dict",
    "SetCriterion",
]

LOSS_KEYS = {"labels": ("loss_ce",), "masks": ("loss_mask", "loss_dice")}


def sigmoid_ce_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Sigmoid BCE averaged over points, summed over masks, divided by ``num_masks``.

    Args:
        inputs (Tensor): (N, P) mask logits.
        targets (Tensor): (N, P) targets in [0, 1].
        num_masks (float): normaliser (number of ground-truth masks).
    Returns:
        Tensor: scalar loss.
    """
    loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")  # (N, P)
    return loss.mean(1).sum() / num_masks


def dice_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Dice loss ``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` summed over masks / ``num_masks``.

    Args:
        inputs (Tensor): (N, P) mask logits (``p = sigmoid(inputs)``).
        targets (Tensor): (N, P) targets in [0, 1].
        num_masks (float): normaliser (number of ground-truth masks).
    Returns:
        Tensor: scalar loss.
    """
    probs = inputs.sigmoid()  # (N, P)
    numerator = 2 * (probs * targets).sum(-1)  # (N,)
    denominator = probs.sum(-1) + targets.sum(-1)  # (N,)
    loss = 1 - (numerator + 1) / (denominator + 1)
    return loss.sum() / num_masks


def calculate_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """PointRend uncertainty of class-agnostic mask logits: ``-|logit|`` (0 on the boundary).

    Args:
        logits (Tensor): (N, 1, ...) logits.
    Returns:
        Tensor: same shape, higher = more uncertain.
    """
    return -logits.abs()


def make_weight_dict(
    class_weight: float = 2.0,
    mask_weight: float = 5.0,
    dice_weight: float = 5.0,
    num_aux: int = 0,
) -> Dict[str, float]:
    """The loss weights of docs/segmentation.md §3.4 (CE 2, BCE 5, dice 5), repeated for aux
    outputs.

    Args:
        class_weight, mask_weight, dice_weight (float): weights of loss_ce/loss_mask/loss_dice.
        num_aux (int): number of auxiliary outputs (9 for a 9-layer decoder with a prediction
            from the query init: 10 sets, the last one is the main output).
    Returns:
        dict[str, float]: {"loss_ce": .., "loss_mask": .., "loss_dice": .., "loss_ce_0": .., ...}.
    """
    base = {"loss_ce": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
    out = dict(base)
    for i in range(num_aux):
        out.update({f"{k}_{i}": v for k, v in base.items()})
    return out


def _num_masks_all_processes(num_masks: int, device: torch.device) -> float:
    """Mean number of ground-truth masks per process, clamped to >= 1."""
    n = torch.as_tensor([float(num_masks)], device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(n)
        n = n / dist.get_world_size()
    return max(n.item(), 1.0)


class SetCriterion(nn.Module):
    """Hungarian-matched classification and mask losses (Mask2Former-style).

    ``forward`` returns the **weighted** losses (each raw loss times its weight), ready for a
    Detectron2 trainer that sums the dict; ``compute_losses`` returns the raw ones. The weight of
    an aux key ``loss_x_{i}`` is ``weight_dict["loss_x_{i}"]`` when present, else
    ``weight_dict["loss_x"]`` (spec: same weights on aux outputs).
    """

    def __init__(
        self,
        num_classes: int,
        matcher: Callable,
        weight_dict: Mapping[str, float],
        eos_coef: float = 0.1,
        losses: Sequence[str] = ("labels", "masks"),
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
    ):
        """
        Args:
            num_classes (int): K, the number of classes without no-object.
            matcher (callable): ``matcher(outputs, targets) -> list[(query_idx, target_idx)]``,
                e.g. :class:`HungarianMatcher`.
            weight_dict (dict[str, float]): loss weights, see :func:`make_weight_dict`.
            eos_coef (float): cross-entropy weight of the no-object class.
            losses (sequence[str]): subset of ("labels", "masks").
            num_points (int): points per matched mask for the mask losses.
            oversample_ratio (float): PointRend oversampling (>= 1).
            importance_sample_ratio (float): fraction of the points taken among the most
                uncertain ones; the rest are uniform.
        """
        super().__init__()
        unknown = set(losses) - set(LOSS_KEYS)
        if unknown:
            raise ValueError(f"SetCriterion: unknown losses {sorted(unknown)}")
        missing = [k for name in losses for k in LOSS_KEYS[name] if k not in weight_dict]
        if missing:
            raise KeyError(f"SetCriterion: weight_dict lacks {missing}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.eos_coef = eos_coef
        self.losses = tuple(losses)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    # ------------------------------------------------------------------ losses
    def loss_labels(
        self,
        outputs: Dict[str, torch.Tensor],
        targets: Sequence[Dict[str, torch.Tensor]],
        indices: List[Tuple[torch.Tensor, torch.Tensor]],
        num_masks: float,
    ) -> Dict[str, torch.Tensor]:
        """Cross-entropy over K+1 classes, no-object weighted by ``eos_coef``."""
        logits = outputs["pred_logits"].float()  # (B, Q, K+1)
        batch_idx, query_idx = self._query_permutation(indices, logits.device)
        matched = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)])  # (N,)
        target_classes = torch.full(
            logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device
        )  # (B, Q)
        target_classes[batch_idx, query_idx] = matched.to(logits.device, torch.int64)
        loss = F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight)
        return {"loss_ce": loss}

    def loss_masks(
        self,
        outputs: Dict[str, torch.Tensor],
        targets: Sequence[Dict[str, torch.Tensor]],
        indices: List[Tuple[torch.Tensor, torch.Tensor]],
        num_masks: float,
    ) -> Dict[str, torch.Tensor]:
        """Sigmoid BCE + dice of matched masks on importance-sampled points.

        Target masks of one image must cover the same extent as the predictions (e.g. both of
        the padded input); their resolution may differ since points are normalised.
        """
        pred_masks = outputs["pred_masks"]  # (B, Q, H, W)
        batch_idx, query_idx = self._query_permutation(indices, pred_masks.device)
        src = pred_masks[batch_idx, query_idx].float()[:, None]  # (N, 1, H, W)
        if src.shape[0] == 0:  # no ground truth in the batch: keep the graph connected
            zero = pred_masks.sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero.clone()}

        with torch.no_grad():
            coords = get_uncertain_point_coords_with_randomness(
                src,
                calculate_uncertainty,
                self.num_points,
                self.oversample_ratio,
                self.importance_sample_ratio,
            )  # (N, P, 2)
            labels = []
            start = 0
            for t, (_, j) in zip(targets, indices):  # target sizes may differ between images
                n = len(j)
                if n:
                    tgt = t["masks"][j.to(t["masks"].device)].to(src)[:, None]  # (n, 1, Ht, Wt)
                    labels.append(
                        point_sample(tgt, coords[start:start + n], align_corners=False)[:, 0]
                    )
                start += n
            point_labels = torch.cat(labels)  # (N, P)
        point_logits = point_sample(src, coords, align_corners=False)[:, 0]  # (N, P)
        return {
            "loss_mask": sigmoid_ce_loss(point_logits, point_labels, num_masks),
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }

    @staticmethod
    def _query_permutation(
        indices: List[Tuple[torch.Tensor, torch.Tensor]], device: torch.device
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(batch_idx (N,), query_idx (N,)) of the matched queries, image-major."""
        batch_idx = torch.cat([torch.full_like(q, b) for b, (q, _) in enumerate(indices)])
        query_idx = torch.cat([q for q, _ in indices])
        return batch_idx.to(device), query_idx.to(device)

    def _losses_of(
        self,
        outputs: Dict[str, torch.Tensor],
        targets: Sequence[Dict[str, torch.Tensor]],
        num_masks: float,
    ) -> Dict[str, torch.Tensor]:
        indices = self.matcher(outputs, targets)
        out = {}
        for name in self.losses:
            fn = self.loss_labels if name == "labels" else self.loss_masks
            out.update(fn(outputs, targets, indices, num_masks))
        return out

    # ------------------------------------------------------------------ entry points
    def compute_losses(
        self,
        outputs: Dict[str, object],
        targets: Sequence[Dict[str, torch.Tensor]],
        num_masks: Optional[float] = None,
    ) -> Dict[str, torch.Tensor]:
        """Raw (unweighted) losses of the main output and of every aux output.

        Args:
            outputs (dict): "pred_logits" (B, Q, K+1), "pred_masks" (B, Q, H, W) logits and
                optionally "aux_outputs", a list of dicts with the same two keys.
            targets (list[dict]): B dicts with "labels" (G,) int64 in [0, K) and "masks"
                (G, Ht, Wt) binary; G may be 0.
            num_masks (float, optional): normaliser override; default = number of target
                masks in the batch, averaged over processes, at least 1.
        Returns:
            dict[str, Tensor]: scalar losses, aux ones with the suffix ``_{i}``.
        """
        if num_masks is None:
            device = outputs["pred_logits"].device
            num_masks = _num_masks_all_processes(sum(len(t["labels"]) for t in targets), device)
        main = {k: v for k, v in outputs.items() if k != "aux_outputs"}
        losses = self._losses_of(main, targets, num_masks)
        for i, aux in enumerate(outputs.get("aux_outputs") or []):
            losses.update(
                {f"{k}_{i}": v for k, v in self._losses_of(aux, targets, num_masks).items()}
            )
        return losses

    def weight_of(self, key: str) -> float:
        """Weight of a loss key; aux keys ``loss_x_{i}`` fall back to ``loss_x``."""
        if key in self.weight_dict:
            return self.weight_dict[key]
        base, _, suffix = key.rpartition("_")
        if suffix.isdigit() and base in self.weight_dict:
            return self.weight_dict[base]
        raise KeyError(f"SetCriterion: no weight for {key!r}")

    def forward(
        self,
        outputs: Dict[str, object],
        targets: Sequence[Dict[str, torch.Tensor]],
    ) -> Dict[str, torch.Tensor]:
        """Weighted losses (see :meth:`compute_losses` for the arguments)."""
        losses = self.compute_losses(outputs, targets)
        return {k: v * self.weight_of(k) for k, v in losses.items()}

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, eos_coef={self.eos_coef}, losses={self.losses}, "
            f"num_points={self.num_points}, oversample_ratio={self.oversample_ratio}, "
            f"importance_sample_ratio={self.importance_sample_ratio}"
        )
