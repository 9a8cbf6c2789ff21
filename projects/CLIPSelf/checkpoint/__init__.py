"""Checkpoint converters: CLIP/CLIPSelf visual towers (EVA-CLIP <-> open_clip/timm) and the
authors' F-ViT mmdet detectors (-> Detectron2)."""
from .clip_convert import (
    LoadReport,
    convert_clip_checkpoint,
    detect_visual_layout,
    eva_clip_to_timm,
    export_clipself_checkpoint,
    load_visual_weights,
    read_checkpoint,
    split_visual_state_dict,
    timm_to_eva_clip,
    unwrap_state_dict,
    visual_to_clipself_state_dict,
)
from .fvit_convert import (
    FVIT_CLIP_PREFIX,
    FViTConvertReport,
    convert_fvit_checkpoint,
    convert_fvit_state_dict,
    fvit_key_groups,
    infer_fvit_model_name,
    is_fvit_mmdet_state_dict,
    read_mmdet_checkpoint,
)
