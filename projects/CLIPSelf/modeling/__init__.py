"""Everything that is a model (Mask2Former / ODISE layout): the CLIP towers (``backbone``;
``CLIPTower`` for any open_clip tower), the open-vocabulary pieces (``open_vocab``), the pure
dense-feature formulas (``dense_ops``) and the three heads (``fvit``, ``panoptic``, ``catseg``).
Models know no datasets: vocabularies come in through ``set_vocabulary``."""
from .backbone import (
    FREEZE_MODES,
    CLIPConvTower,
    CLIPTower,
    CLIPViT,
    TowerGeometry,
    TowerUnsupported,
    FViTBackbone,
    FViTFPN,
    build_visual_tower,
    pyramid_taps,
    resolve_model_config,
    tower_geometry,
)
from .catseg import CATSeg
from .dense_ops import LAST_BLOCK_MODES, pool_boxes, pool_masks
from .fvit import FViT
from .open_vocab import (
    SINGLE_TEMPLATES,
    VILD_TEMPLATES,
    HubUnavailableError,
    TextClassifier,
    build_text_tower,
    build_tokenizer,
    class_prompts,
    encode_class_names,
    format_class_name,
    get_templates,
    load_text_weights,
    save_text_embeddings,
)
from .panoptic import OVMaskFormer
