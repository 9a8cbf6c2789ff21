"""Open-vocabulary semantic segmentation: Cat-Seg cost aggregation on CLIPSelf features
(paper Table 4, ``docs/segmentation.md``)."""
from .aggregator import (
    Aggregator,
    AggregatorLayer,
    ClassAggregation,
    CostEmbed,
    SpatialAggregation,
    SwinBlock,
    guided_linear,
    linear_attention,
    shifted_window_mask,
    window_attention,
)
from .cost import UNSELECTED_LOGIT, cost_volume, gather_classes, scatter_classes, select_classes
from .decoder import GuidanceProjection, UpBlock, UpsamplingDecoder
from .finetune import (
    FINETUNE_POLICIES,
    apply_finetune_policy,
    catseg_lr_factor,
    catseg_param_groups,
    finetune_masks,
)
from .meta_arch import CATSeg, onehot_targets, sigmoid_bce_loss

__all__ = [k for k in globals().keys() if not k.startswith("_")]
