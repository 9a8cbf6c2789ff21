"""CLIP towers as Detectron2 backbones: :func:`CLIPTower` for any open_clip tower (the CLIP ViT
with CLIPSelf dense features, or a CNN tower with MaskCLIP-style dense features; one adapter per
family in ``towers``) and the simple feature pyramid that F-ViT and the panoptic head build on
it."""
from .clip_tower import (
    CLIPConvTower,
    CLIPTower,
    TowerGeometry,
    pyramid_taps,
    tower_geometry,
    tower_kind,
)
from .clip_vit import CLIPViT
from .tower_config import (
    CLIP_PIXEL_MEAN,
    CLIP_PIXEL_STD,
    FREEZE_MODES,
    build_visual_tower,
    closest_model_names,
    register_project_model_configs,
    resolve_model_config,
)
from .towers import TowerUnsupported
from .simple_pyramid import NOMINAL_STRIDES, FViTBackbone, FViTFPN

__all__ = [k for k in globals().keys() if not k.startswith("_")]
