"""The synthetic world (procedural OV detection / panoptic data) and, later, the toy CLIP.

In memory: :func:`generate_scene`; on disk: :func:`prepare_world` (or
``python datasets/prepare_synthetic.py``); Detectron2 registration lives in
``clipself.data.datasets.synthetic``.
"""
from .world import (
    ALL_CLASSES, BASE_CLASSES, CATEGORIES, COLOURS, IGNORE_LABEL, NOVEL_CLASSES,
    PANOPTIC_LABEL_DIVISOR, REGION_CAPTION_COVER, REGION_CAPTION_MAX_NAMES,
    REGION_CAPTION_MIN_SHARE, SHAPES, STUFF_CLASSES, STUFF_IDS, THING_CLASSES, THING_IDS,
    generate_scene, make_caption, panoptic_map, region_caption, region_caption_classes,
    region_scene_caption, scene_rng, semantic_map,
)
from .writer import WORLD_VERSION, encode_mask, prepare_world, world_paths
from .preview import render_preview
