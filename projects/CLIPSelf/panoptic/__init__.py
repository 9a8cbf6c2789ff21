"""Open-vocabulary panoptic segmentation head (Mask2Former-style, spec SEGMENTATION §1.6-§1.8)."""
# pixel decoder
from .ms_deform_attn import MSDeformAttn, ms_deform_attn_core
from .pixel_decoder import MSDeformAttnPixelDecoder, position_embedding_sine
# matching, losses, inference
from .criterion import SetCriterion, dice_loss, make_weight_dict, sigmoid_ce_loss
from .inference import (
    ENSEMBLE_MODES,
    ensemble_clip_logits,
    ensemble_for_mode,
    instance_inference,
    mask_pool,
    panoptic_inference,
    semantic_inference,
)
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
    cosine_logits,
    masked_average_pool,
)
# meta-architecture
from .meta_arch import (
    OVMaskFormer,
    class_synonyms,
    dataset_thing_ids,
    panoptic_vocabulary,
    seen_by_synonyms,
)
