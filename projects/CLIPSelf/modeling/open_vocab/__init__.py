"""The open-vocabulary pieces shared by every head: text classifiers and prompt templates, the
cosine classifier and the CLIP-score ensembles (the :class:`Vocabulary` itself lives in
``clipself.structures``, beside the data that builds it)."""
from ...structures import Vocabulary, build_vocabulary, cosine_logits
from .ensemble import ENSEMBLE_MODES, ensemble_clip_logits, ensemble_for_mode, ensemble_scores
from .templates import (
    CATSEG_TEMPLATES,
    IMAGENET_TEMPLATES,
    SINGLE_TEMPLATES,
    TEMPLATE_SETS,
    VILD_TEMPLATES,
    get_templates,
)
from .text_classifier import (
    HubUnavailableError,
    TextClassifier,
    build_text_tower,
    build_tokenizer,
    class_prompts,
    embeddings_to_dict,
    encode_class_names,
    format_class_name,
    initial_logit_params,
    load_text_weights,
    logit_params,
    save_text_embeddings,
)

__all__ = [k for k in globals().keys() if not k.startswith("_")]
