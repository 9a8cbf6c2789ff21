"""CLIPSelf self-distillation: regions, the student/teacher meta-architecture, weight ensembling."""
from .ensemble import ensemble_state_dicts
from .export import export_distilled
from .meta_arch import CLIPSelf, cosine_distillation_loss
from .teacher_cache import TeacherCache
