"""CLIPSelf self-distillation: regions, the student/teacher meta-architecture, weight ensembling."""
from .ensemble import ensemble_state_dicts
from .export import export_distilled
from .meta_arch import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD, CLIPSelf, cosine_distillation_loss
from .regions import grid_choices, sample_grid_boxes, select_proposals
