"""F-ViT open-vocabulary box predictor (docs/fvit.md §5-§6).

Formulas are pure functions (:func:`clipself.structures.cosine_logits`,
:func:`weighted_class_loss`, :func:`class_loss_weights`,
:func:`clipself.modeling.open_vocab.ensemble_scores`); :class:`OpenVocabOutputLayers` wires them
into Detectron2's
``FastRCNNOutputLayers`` (class-agnostic L1 box regression and ``fast_rcnn_inference`` reused).
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers, _log_classification_stats
from detectron2.structures import Instances
from torch import nn

from ...structures import Vocabulary, cosine_logits
from ..open_vocab.ensemble import ensemble_scores

__all__ = ["OpenVocabOutputLayers", "class_loss_weights", "weighted_class_loss"]

MIN_CLASS_WEIGHT = 1e-5  # classes below it never enter the softmax (docs/fvit.md §5)


def class_loss_weights(seen_mask: torch.Tensor, background_weight: float) -> torch.Tensor:
    """Cross-entropy class weights (docs/fvit.md §5): base 1, novel 0, background last.

    Args:
        seen_mask (Tensor): (K,) bool, True for base classes.
        background_weight (float): 0.6 on OV-COCO, 0.9 on OV-LVIS.
    Returns:
        Tensor: (K+1,) float32.
    """
    w = seen_mask.float()
    return torch.cat([w, w.new_tensor([background_weight])])


def weighted_class_loss(
    logits: torch.Tensor, gt_classes: torch.Tensor, class_weights: torch.Tensor
) -> torch.Tensor:
    """Class-weighted softmax cross-entropy averaged over the R sampled RoIs (docs/fvit.md §5).

    Classes with weight < 1e-5 get -inf logits (they never enter the softmax and receive no
    gradient); RoIs labelled with such a class contribute 0. The mean divides by R, not by
    the sum of weights (mmdet ``CustomCrossEntropyLoss`` with ``avg_factor``).

    Args:
        logits (Tensor): (R, K+1), background last.
        gt_classes (Tensor): (R,) int64 in [0, K] (K = background).
        class_weights (Tensor): (K+1,).
    Returns:
        Tensor: scalar.
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    allowed = class_weights >= MIN_CLASS_WEIGHT  # (K+1,)
    logits = logits.masked_fill(~allowed, float("-inf"))
    w = class_weights.to(logits.dtype)[gt_classes]  # (R,)
    keep = allowed[gt_classes]
    safe_gt = torch.where(keep, gt_classes, torch.full_like(gt_classes, logits.shape[1] - 1))
    ce = F.cross_entropy(logits, safe_gt, reduction="none")  # (R,)
    return torch.where(keep, ce * w, torch.zeros_like(ce)).sum() / logits.shape[0]


class OpenVocabOutputLayers(FastRCNNOutputLayers):
    """Cosine classification against text embeddings + class-agnostic box regression.

    cls branch: FC(D, D) + ReLU -> L2 norm -> ``tau * x @ E.T`` over [classes..., background],
    ``tau`` learnable (init 50), ``E`` the vocabulary's fixed unit text embeddings.
    reg branch: FC(D, D) + ReLU -> FC(D, 4) (deltas with weights (10, 10, 5, 5), L1 loss).
    At test, with ``region_clip`` features given and ``clip_ensemble`` set, scores are
    :func:`ensemble_scores` of the detector's and CLIP's softmaxes.
    """

    def __init__(
        self,
        *,
        input_shape: ShapeSpec,
        box2box_transform: Box2BoxTransform,
        vocabulary: Vocabulary,
        temperature: float = 50.0,
        background_weight: float = 0.6,
        clip_ensemble: Optional[Dict[str, float]] = None,
        test_score_thresh: float = 0.01,
        test_nms_thresh: float = 0.4,
        test_topk_per_image: int = 100,
        box_reg_loss_type: str = "smooth_l1",
        smooth_l1_beta: float = 0.0,
        loss_weight=1.0,
    ):
        """
        Args:
            input_shape (ShapeSpec): box-head output (channels = CLIP embedding dim D).
            box2box_transform (Box2BoxTransform): delta encoding (weights (10, 10, 5, 5)).
            vocabulary (Vocabulary): classes, text embeddings (with background), base/novel
                split (``seen_mask``).
            temperature (float): initial value of the learnable logit scale.
            background_weight (float): CE weight of background (0.6 COCO, 0.9 LVIS); novel
                classes get 0, base 1.
            clip_ensemble (dict): ``{"temperature": T_vlm, "alpha": a, "beta": b}`` or None
                (detector scores only).
            test_score_thresh, test_nms_thresh, test_topk_per_image: ``fast_rcnn_inference``.
            box_reg_loss_type, smooth_l1_beta, loss_weight: as ``FastRCNNOutputLayers``
                (smooth L1 with beta 0 = L1).
        """
        super().__init__(
            input_shape=input_shape,
            box2box_transform=box2box_transform,
            num_classes=vocabulary.num_classes,
            test_score_thresh=test_score_thresh,
            test_nms_thresh=test_nms_thresh,
            test_topk_per_image=test_topk_per_image,
            cls_agnostic_bbox_reg=True,
            smooth_l1_beta=smooth_l1_beta,
            box_reg_loss_type=box_reg_loss_type,
            loss_weight=loss_weight,
        )
        del self.cls_score  # classification is by text embeddings
        D = input_shape.channels * (input_shape.width or 1) * (input_shape.height or 1)
        self.cls_fc = nn.Linear(D, D)
        self.reg_fc = nn.Linear(D, D)
        for fc in (self.cls_fc, self.reg_fc):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        self.temperature = nn.Parameter(torch.tensor(float(temperature)))
        self.background_weight = float(background_weight)
        if clip_ensemble is not None:
            unknown = set(clip_ensemble) - {"temperature", "alpha", "beta"}
            if unknown or len(clip_ensemble) != 3:
                raise ValueError(
                    f"clip_ensemble needs exactly temperature, alpha, beta; got {clip_ensemble}"
                )
        self.clip_ensemble = dict(clip_ensemble) if clip_ensemble else None
        self.set_vocabulary(vocabulary)

    def set_vocabulary(self, vocabulary: Vocabulary) -> None:
        """Swap the classes (no retraining); the buffers are not saved in checkpoints."""
        dev = self.temperature.device
        D = self.cls_fc.in_features
        if vocabulary.dim != D:
            raise ValueError(f"text embeddings have dim {vocabulary.dim}, the box head {D}")
        self.num_classes = vocabulary.num_classes
        self.vocabulary = vocabulary
        self.register_buffer("class_embeddings", vocabulary.with_background().to(dev),
                             persistent=False)  # (K+1, D), background last
        self.register_buffer("seen_mask", vocabulary.seen_mask.to(dev), persistent=False)
        self.register_buffer(
            "class_weights",
            class_loss_weights(vocabulary.seen_mask, self.background_weight).to(dev),
            persistent=False,
        )

    def forward(self, x: torch.Tensor, region_clip: Optional[torch.Tensor] = None):
        """
        Args:
            x (Tensor): (R, D) box-head features.
            region_clip (Tensor): (R, D) CLIP dense features pooled on the proposals (test).
        Returns:
            tuple: logits (R, K+1), deltas (R, 4), region_clip (or None).
        """
        x = x.flatten(1)
        logits = cosine_logits(F.relu(self.cls_fc(x)), self.class_embeddings, self.temperature)
        deltas = self.bbox_pred(F.relu(self.reg_fc(x)))
        return logits, deltas, region_clip

    def losses(self, predictions, proposals: List[Instances]) -> Dict[str, torch.Tensor]:
        logits, deltas = predictions[:2]
        gt_classes = (
            cat([p.gt_classes for p in proposals], dim=0)
            if len(proposals) else torch.empty(0, dtype=torch.long, device=logits.device)
        )
        _log_classification_stats(logits, gt_classes)
        if len(proposals):
            proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
            gt_boxes = cat(
                [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor
                 for p in proposals], dim=0,
            )
        else:
            proposal_boxes = gt_boxes = torch.empty((0, 4), device=deltas.device)
        losses = {
            "loss_cls": weighted_class_loss(logits, gt_classes, self.class_weights),
            "loss_box_reg": self.box_reg_loss(proposal_boxes, gt_boxes, deltas, gt_classes),
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}

    def predict_probs(self, predictions, proposals: List[Instances]) -> Tuple[torch.Tensor, ...]:
        logits, _, region_clip = predictions
        probs = F.softmax(logits.float(), dim=-1)
        if self.clip_ensemble is not None and region_clip is not None:
            p_clip = F.softmax(
                cosine_logits(region_clip.float(), self.class_embeddings.float(),
                              self.clip_ensemble["temperature"]), dim=-1,
            )
            probs = ensemble_scores(probs, p_clip, self.seen_mask,
                                    self.clip_ensemble["alpha"], self.clip_ensemble["beta"])
        return probs.split([len(p) for p in proposals], dim=0)

    def predict_boxes(self, predictions, proposals: List[Instances]):
        return super().predict_boxes(predictions[:2], proposals)
