"""CLIP towers as Detectron2 backbones: the CLIP ViT with CLIPSelf dense features and the simple
feature pyramid that F-ViT and the panoptic head build on it."""
from .clip_vit import (
    CLIP_PIXEL_MEAN,
    CLIP_PIXEL_STD,
    FREEZE_MODES,
    CLIPViT,
    build_visual_tower,
    register_project_model_configs,
    resolve_model_config,
)
from .simple_pyramid import NOMINAL_STRIDES, FViTBackbone, FViTFPN

__all__ = [k for k in globals().keys() if not k.startswith("_")]
