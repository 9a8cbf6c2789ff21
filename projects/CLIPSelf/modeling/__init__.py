"""Models: the CLIP ViT backbone with CLIPSelf dense features, pooling ops, text classifiers."""
from .clip_vit import FREEZE_MODES, CLIPViT, build_visual_tower, resolve_model_config
from .dense_ops import LAST_BLOCK_MODES, pool_boxes, pool_masks
from .templates import SINGLE_TEMPLATES, VILD_TEMPLATES, get_templates
from .text_classifier import (
    TextClassifier,
    build_text_tower,
    class_prompts,
    encode_class_names,
    format_class_name,
    load_text_weights,
    save_text_embeddings,
)
