"""F-ViT: open-vocabulary detection on a frozen CLIP ViT (paper Sec. 4.2, ``docs/fvit.md``)."""
from .meta_arch import FViT
from .output_layers import OpenVocabOutputLayers, class_loss_weights, weighted_class_loss
from .poolers import FloatStrideROIPooler
from .roi_heads import FViTROIHeads
from .rpn import NormRPNHead

__all__ = [k for k in globals().keys() if not k.startswith("_")]
