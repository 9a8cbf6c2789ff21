"""F-ViT: open-vocabulary detection on a frozen CLIP ViT (spec §4)."""
from .backbone import NOMINAL_STRIDES, FViTBackbone, FViTFPN
from .meta_arch import FViT
from .poolers import FloatStrideROIPooler
from .predictor import (
    OpenVocabOutputLayers,
    cosine_class_logits,
    ensemble_scores,
    weighted_class_loss,
)
from .roi_heads import FViTROIHeads
from .rpn import NormRPNHead
from .vocabulary import Vocabulary, build_vocabulary, class_loss_weights, parse_class_list

__all__ = [k for k in globals().keys() if not k.startswith("_")]
