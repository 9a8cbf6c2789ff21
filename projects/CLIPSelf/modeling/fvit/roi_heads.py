"""F-ViT RoI heads: Detectron2's ``StandardROIHeads`` plus CLIP region features at test."""
from typing import Dict, List, Optional

import torch
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.structures import Instances

from ..dense_ops import pool_boxes

__all__ = ["FViTROIHeads"]


class FViTROIHeads(StandardROIHeads):
    """At inference, pools the CLIP dense map (``clip_in_feature``) on the proposal boxes
    (before regression, docs/fvit.md §6) and hands it to the predictor for the score ensemble."""

    def __init__(
        self, *, clip_in_feature: str = "clip_dense", clip_stride: Optional[float] = None, **kwargs
    ):
        """
        Args:
            clip_in_feature (str): feature name of the CLIP dense map (absent in training).
            clip_stride (float): its stride in input pixels (the ViT patch size).
            kwargs: ``StandardROIHeads`` arguments.
        """
        super().__init__(**kwargs)
        self.clip_in_feature = clip_in_feature
        self.clip_stride = clip_stride

    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        boxes = [p.proposal_boxes for p in proposals]
        region_clip = None
        if not self.training and self.clip_in_feature in features:
            if self.clip_stride is None:
                raise ValueError("FViTROIHeads: clip_stride is needed to pool the CLIP map")
            region_clip = pool_boxes(features[self.clip_in_feature], boxes, self.clip_stride)
        box_features = self.box_pooler([features[f] for f in self.box_in_features], boxes)
        box_features = self.box_head(box_features)
        predictions = self.box_predictor(box_features, region_clip)
        del box_features
        if self.training:
            return self.box_predictor.losses(predictions, proposals)
        pred_instances, _ = self.box_predictor.inference(predictions, proposals)
        return pred_instances
