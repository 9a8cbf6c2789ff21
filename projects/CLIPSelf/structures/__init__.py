"""Data structures shared by data, models and evaluation (like ``detectron2.structures``)."""
from .vocabulary import (
    CLIP_LOGIT_SCALE,
    Vocabulary,
    build_vocabulary,
    class_synonyms,
    cosine_logits,
    parse_class_list,
    read_embeddings,
    seen_by_synonyms,
    vocabulary_scores,
)
