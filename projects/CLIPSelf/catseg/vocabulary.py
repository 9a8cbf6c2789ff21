"""Semantic-segmentation vocabularies with one text embedding per prompt template.

CAT-Seg's cost volume has one channel per template (spec SEGMENTATION §2.1), so a vocabulary
holds (T, P, D) embeddings: for each class and template, the synonyms of the class ("a, b"
names) are embedded with that template, L2-normalised, averaged and normalised again (the old
CAT-Seg used by CLIPSelf, spec §2.3). Like the detection vocabulary, it is data, not weights.
"""
import copy
import os
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

__all__ = [
    "IMAGENET_TEMPLATES",
    "CATSEG_TEMPLATES",
    "SemSegVocabulary",
    "semseg_vocabulary",
    "embed_per_template",
    "split_synonyms",
    "resolve_templates",
]

#: CLIP's 80 ImageNet prompt templates (Radford et al., 2021), the old CAT-Seg prompt set.
IMAGENET_TEMPLATES = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

#: CAT-Seg HEAD's single prompt (``PROMPT_ENSEMBLE_TYPE: single``, spec §2.1).
CATSEG_TEMPLATES = ("A photo of a {} in the scene",)


def resolve_templates(templates: Union[str, Sequence[str]]) -> List[str]:
    """"imagenet" (80), "catseg" (1), "vild" (63), "single" ("a photo of a {}."), or a list."""
    if isinstance(templates, str):
        key = templates.lower()
        if key == "imagenet":
            return list(IMAGENET_TEMPLATES)
        if key == "catseg":
            return list(CATSEG_TEMPLATES)
    from clipself.modeling.templates import get_templates

    return get_templates(templates)


def split_synonyms(name: str) -> List[str]:
    """``"person, individual"`` -> ["person", "individual"] (stripped, empty parts dropped)."""
    out = [s.strip() for s in str(name).split(",") if s.strip()]
    if not out:
        raise ValueError(f"empty class name {name!r}")
    return out


@dataclass(frozen=True)
class SemSegVocabulary:
    """T class names and their (T, P, D) unit text embeddings, one per prompt template."""

    class_names: Tuple[str, ...]
    embeddings: torch.Tensor

    def __post_init__(self):
        T = len(self.class_names)
        if T == 0:
            raise ValueError("empty vocabulary: give at least one class name")
        if self.embeddings.dim() != 3 or self.embeddings.shape[0] != T:
            raise ValueError(
                f"vocabulary of {T} classes needs ({T}, P, D) embeddings; "
                f"got {tuple(self.embeddings.shape)}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_templates(self) -> int:
        return int(self.embeddings.shape[1])


def embed_per_template(
    text_encoder, class_names: Sequence[Union[str, Sequence[str]]],
    templates: Optional[Union[str, Sequence[str]]] = None,
) -> torch.Tensor:
    """(T, P, D) embeddings: every class embedded with each template separately.

    Args:
        text_encoder: a :class:`clipself.modeling.TextClassifier` (its tower, tokenizer and
            on-disk cache are reused; one template at a time), or a callable
            ``fn(class_names, template) -> (T, D)``.
        class_names (list[str or list[str]]): T entries, a name or a list of synonyms.
        templates (str or list[str]): see :func:`resolve_templates`; None = the classifier's own.
    Returns:
        Tensor: (T, P, D) float32, unit vectors.
    """
    from clipself.modeling import TextClassifier

    if isinstance(text_encoder, TextClassifier):
        if templates is None:
            temps, this_is = list(text_encoder.templates), text_encoder.this_is
        else:
            temps = resolve_templates(templates)
            this_is = isinstance(templates, str) and templates.lower() == "vild"
        text_encoder._load_model()  # shared by the per-template copies below
        rows = []
        for t in temps:
            one = copy.copy(text_encoder)
            one.templates, one.this_is = [t], this_is
            rows.append(one.embed(list(class_names)))  # (T, D)
    elif callable(text_encoder):
        temps = resolve_templates("imagenet" if templates is None else templates)
        rows = [torch.as_tensor(text_encoder(list(class_names), t)) for t in temps]
    else:
        raise TypeError(f"text_encoder: expected a TextClassifier or a callable, got "
                        f"{type(text_encoder).__name__}")
    return F.normalize(torch.stack(rows, dim=1).float(), dim=-1)


def _load_embeddings(source) -> torch.Tensor:
    if isinstance(source, str):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"text-embedding file {source!r} not found")
        if source.endswith(".npy"):
            import numpy as np

            return torch.from_numpy(np.load(source))
        source = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(source, torch.Tensor):
        raise TypeError(f"embeddings: expected a (T, P, D) tensor or a file with one, got "
                        f"{type(source).__name__}")
    return source


def semseg_vocabulary(
    dataset_name: Optional[str] = None,
    class_names: Optional[Sequence[str]] = None,
    text_encoder: Optional[Callable] = None,
    embeddings=None,
    templates: Optional[Union[str, Sequence[str]]] = "imagenet",
) -> SemSegVocabulary:
    """The vocabulary of a semantic-segmentation dataset or class list.

    Args:
        dataset_name (str): a registered dataset; its ``stuff_classes`` name the classes.
        class_names (list[str]): the classes (instead of a dataset); ``"a, b"`` names are
            synonyms, averaged per template.
        text_encoder: a :class:`~clipself.modeling.TextClassifier` or a callable
            ``fn(class_names, template) -> (T, D)`` (see :func:`embed_per_template`).
        embeddings: instead of an encoder, a (T, P, D) tensor (or (T, D), then P = 1), or a
            ``.pt``/``.npy`` file holding one.
        templates (str or list[str]): prompt templates (default: the 80 ImageNet ones);
            None = the classifier's own.
    Returns:
        SemSegVocabulary
    """
    if class_names is None:
        if dataset_name is None:
            raise ValueError("semseg_vocabulary: give dataset_name or class_names")
        from detectron2.data import MetadataCatalog

        class_names = getattr(MetadataCatalog.get(dataset_name), "stuff_classes", None)
        if not class_names:
            raise ValueError(f"dataset {dataset_name!r} has no stuff_classes")
    names = tuple(str(n) for n in class_names)
    if embeddings is not None:
        emb = _load_embeddings(embeddings).float()
        emb = emb.unsqueeze(1) if emb.dim() == 2 else emb
    elif text_encoder is not None:
        emb = embed_per_template(text_encoder, [split_synonyms(n) for n in names], templates)
    else:
        raise ValueError("semseg_vocabulary: give embeddings or a text_encoder")
    return SemSegVocabulary(class_names=names, embeddings=F.normalize(emb, dim=-1))
