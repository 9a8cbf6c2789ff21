"""Hungarian matching of mask predictions to ground-truth segments (docs/segmentation.md §3.4).

Shape shorthand in this module:
    B: images, Q: queries, K: classes (the no-object class is index K), G: ground-truth
    segments of one image, P: sampled points, H/W: prediction mask size, Ht/Wt: target mask size.

The matching cost between query q and segment g of one image is
``cost_class * (-p_q(c_g)) + cost_mask * BCE(q, g) + cost_dice * dice(q, g)``, where the two mask
terms are evaluated on ``num_points`` random points shared by all predictions and targets of the
image, in fp32. The assignment minimising the total cost comes from
``scipy.optimize.linear_sum_assignment``.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.projects.point_rend.point_features import point_sample
from scipy.optimize import linear_sum_assignment
from torch import nn

__all__ = ["batch_sigmoid_ce_cost", "batch_dice_cost", "HungarianMatcher"]


def batch_sigmoid_ce_cost(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Pairwise sigmoid binary cross-entropy, averaged over points.

    ``cost[q, g] = mean_p BCE(sigmoid(inputs[q, p]), targets[g, p])``. BCE is linear in the
    target, so the pairwise table is two matrix products of the per-point losses against a
    positive and a negative target.

    Args:
        inputs (Tensor): (Q, P) mask logits.
        targets (Tensor): (G, P) targets in [0, 1].
    Returns:
        Tensor: (Q, G) costs.
    """
    num_points = inputs.shape[1]
    pos = F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    neg = F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    # (Q, P) @ (P, G) for the target=1 and target=0 parts
    cost = pos @ targets.t() + neg @ (1 - targets).t()  # (Q, G)
    return cost / num_points


def batch_dice_cost(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Pairwise dice cost ``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` with ``p = sigmoid(inputs)``.

    Args:
        inputs (Tensor): (Q, P) mask logits.
        targets (Tensor): (G, P) targets in [0, 1].
    Returns:
        Tensor: (Q, G) costs.
    """
    probs = inputs.sigmoid()  # (Q, P)
    numerator = 2 * probs @ targets.t()  # (Q, G)
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]  # (Q, G)
    return 1 - (numerator + 1) / (denominator + 1)


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to ground-truth segments, image by image.

    Unmatched queries (Q > G) are trained towards the no-object class by the criterion.
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_mask: float = 5.0,
        cost_dice: float = 5.0,
        num_points: int = 12544,
    ):
        """
        Args:
            cost_class (float): weight of the negative class probability of the target class.
            cost_mask (float): weight of the point-averaged sigmoid BCE.
            cost_dice (float): weight of the dice cost.
            num_points (int): random points per image on which mask costs are evaluated
                (12544 = 112 * 112).
        """
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("HungarianMatcher: all costs are 0")
        if num_points <= 0:
            raise ValueError(f"HungarianMatcher: num_points must be positive, got {num_points}")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    def cost_matrix(
        self,
        logits: torch.Tensor,
        masks: torch.Tensor,
        labels: torch.Tensor,
        target_masks: torch.Tensor,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Matching costs of one image, in fp32.

        Args:
            logits (Tensor): (Q, K+1) class logits.
            masks (Tensor): (Q, H, W) mask logits.
            labels (Tensor): (G,) contiguous class ids in [0, K).
            target_masks (Tensor): (G, Ht, Wt) binary masks covering the same image extent as
                ``masks`` (any resolution: both are sampled at the same normalised points).
            generator (torch.Generator, optional): source of the random points (on any
                device; default: the global RNG of ``masks.device``).
        Returns:
            Tensor: (Q, G) costs.
        """
        with torch.autocast(device_type=logits.device.type, enabled=False):
            prob = logits.float().softmax(-1)  # (Q, K+1)
            cost_class = -prob[:, labels]  # (Q, G)
            rand_device = generator.device if generator is not None else masks.device
            coords = torch.rand(
                1, self.num_points, 2, device=rand_device, generator=generator
            ).to(masks.device)  # (1, P, 2) in [0, 1]^2, shared by predictions and targets
            tgt = point_sample(
                target_masks[:, None].float(), coords.expand(target_masks.shape[0], -1, -1),
                align_corners=False,
            )[:, 0]  # (G, P)
            out = point_sample(
                masks[:, None].float(), coords.expand(masks.shape[0], -1, -1),
                align_corners=False,
            )[:, 0]  # (Q, P)
            cost_mask = batch_sigmoid_ce_cost(out, tgt)
            cost_dice = batch_dice_cost(out, tgt)
        return (
            self.cost_class * cost_class + self.cost_mask * cost_mask + self.cost_dice * cost_dice
        )

    @torch.no_grad()
    def forward(
        self,
        outputs: Dict[str, torch.Tensor],
        targets: Sequence[Dict[str, torch.Tensor]],
        generator: Optional[torch.Generator] = None,
    ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """
        Args:
            outputs (dict): "pred_logits" (B, Q, K+1) class logits and "pred_masks"
                (B, Q, H, W) mask logits; other keys are ignored.
            targets (list[dict]): B dicts with "labels" (G,) int64 and "masks" (G, Ht, Wt).
            generator (torch.Generator, optional): source of the random points (tests).
        Returns:
            list[tuple[Tensor, Tensor]]: per image, (query_idx, target_idx) int64 tensors of
            length min(Q, G), sorted by query index; ``target_idx[i]`` is matched to
            ``query_idx[i]``.
        """
        pred_logits, pred_masks = outputs["pred_logits"], outputs["pred_masks"]
        if len(targets) != pred_logits.shape[0]:
            raise ValueError(
                f"HungarianMatcher: {len(targets)} targets for {pred_logits.shape[0]} images"
            )
        indices = []
        for b, target in enumerate(targets):  # matching is per image
            labels = target["labels"]
            if labels.numel() == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            cost = self.cost_matrix(
                pred_logits[b], pred_masks[b], labels, target["masks"], generator=generator
            )
            query_idx, target_idx = linear_sum_assignment(cost.cpu().numpy())
            indices.append(
                (
                    torch.as_tensor(query_idx, dtype=torch.int64),
                    torch.as_tensor(target_idx, dtype=torch.int64),
                )
            )
        return indices

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, "
            f"cost_dice={self.cost_dice}, num_points={self.num_points}"
        )
