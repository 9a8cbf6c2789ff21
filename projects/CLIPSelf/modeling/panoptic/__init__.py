"""Open-vocabulary panoptic segmentation head (Mask2Former-style with ODISE's CLIP-score
ensemble, paper Table 5, ``docs/segmentation.md``)."""
# pixel decoder
from .ms_deform_attn import MSDeformAttn, ms_deform_attn_core
from .pixel_decoder import MSDeformAttnPixelDecoder, position_embedding_sine
# matching, losses, inference
from .criterion import SetCriterion, dice_loss, make_weight_dict, sigmoid_ce_loss
from .inference import instance_inference, mask_pool, panoptic_inference, semantic_inference
from .matcher import HungarianMatcher, batch_dice_cost, batch_sigmoid_ce_cost
# transformer decoder
from .transformer_decoder import (
    MLP,
    CrossAttentionLayer,
    FFNLayer,
    MultiScaleMaskedTransformerDecoder,
    OpenVocabClassHead,
    SelfAttentionLayer,
    attention_mask_from_masks,
)
# meta-architecture
from .meta_arch import OVMaskFormer

__all__ = [k for k in globals().keys() if not k.startswith("_")]
