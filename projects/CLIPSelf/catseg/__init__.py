"""Open-vocabulary semantic segmentation: CAT-Seg cost aggregation on CLIPSelf features
(spec SEGMENTATION §2, paper Table 4)."""
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
from .meta_arch import CATSeg, CLIP_PIXEL_MEAN, CLIP_PIXEL_STD, onehot_targets, sigmoid_bce_loss
from .vocabulary import (
    CATSEG_TEMPLATES,
    IMAGENET_TEMPLATES,
    SemSegVocabulary,
    embed_per_template,
    resolve_templates,
    semseg_vocabulary,
    split_synonyms,
)

__all__ = [k for k in globals().keys() if not k.startswith("_")]
