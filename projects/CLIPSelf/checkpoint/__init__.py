"""Checkpoint layouts: pure state-dict mapping between the authors' released CLIPSelf / EVA-CLIP
and F-ViT (mmdetection) files and this project's models. Nothing here builds a model: loaders
take the target module, and ``clipself.engine.convert`` drives file conversions."""
from .clip_convert import (
    LoadReport,
    detect_visual_layout,
    eva_clip_to_timm,
    export_clipself_checkpoint,
    has_eva_clip_layout,
    load_reported,
    load_visual_weights,
    non_visual_state,
    split_visual_state_dict,
    timm_to_eva_clip,
    unwrap_state_dict,
    visual_to_clipself_state_dict,
)
from .fvit_convert import (
    FVIT_CLIP_PREFIX,
    FViTConvertReport,
    check_fvit_state_dict,
    convert_fvit_state_dict,
    fvit_key_groups,
    infer_fvit_model_name,
    is_fvit_mmdet_state_dict,
    read_mmdet_checkpoint,
    save_fvit_checkpoint,
)
from .io import (
    CheckpointWriteError,
    UnsafeCheckpointError,
    checkpoint_nbytes,
    read_checkpoint,
    read_pickle_checkpoint,
    save_checkpoint_file,
    save_text_file,
)
