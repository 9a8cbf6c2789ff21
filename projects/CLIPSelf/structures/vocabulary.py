"""The one open-vocabulary structure: class names, their text embeddings and what is known about
them (synonyms, seen in training, thing or stuff).

Every open-vocabulary model of the project (F-ViT, the panoptic head, CAT-Seg) and the region
evaluator classify against a :class:`Vocabulary` given to ``set_vocabulary(vocabulary)``; the
vocabulary is data, not weights (its embeddings live in non-persistent buffers and are never in
checkpoints), so a model trained on one class list recognises any other. It sits beside the
models, the data and the evaluation (like ``detectron2.structures``) because all three use it:
data builds vocabularies from dataset metadata (:func:`clipself.data.dataset_vocabulary`), models
and evaluators classify with them.

Shape shorthand: K classes, P prompt templates, D CLIP embedding dim, R regions.
"""
import os
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "Vocabulary",
    "build_vocabulary",
    "cosine_logits",
    "vocabulary_scores",
    "CLIP_LOGIT_SCALE",
    "class_synonyms",
    "seen_by_synonyms",
    "parse_class_list",
    "read_embeddings",
]

#: embeddings given instead of a text encoder: a tensor, a ``{name: (D,)}`` dict (the authors'
#: ``.pt`` format) or the path of a ``.pt`` / ``.npy`` file holding either
EmbeddingSource = Union[str, Mapping[str, torch.Tensor], torch.Tensor, np.ndarray]

#: COCO panoptic's name suffixes that are not part of the class ("wall-other-merged" = wall)
_NAME_SUFFIXES = ("-merged", "-other", "-stuff")


def cosine_logits(
    features: torch.Tensor, embeddings: torch.Tensor, temperature: Union[float, torch.Tensor] = 1.0
) -> torch.Tensor:
    """The open-vocabulary classifier: scaled cosine similarity
    ``temperature * normalize(features) @ normalize(embeddings).T``.

    Args:
        features (Tensor): (..., D) region / query / pixel embeddings of any norm.
        embeddings (Tensor): (K, D) class embeddings of any norm (a :class:`Vocabulary`'s rows
            are unit already; a learned projection of them is not).
        temperature (float or Tensor): the logit scale (learnable in F-ViT and the panoptic
            class head).
    Returns:
        Tensor: (..., K) logits in the dtype of ``features``.
    """
    e = F.normalize(embeddings.to(features.dtype), dim=-1)
    return temperature * torch.matmul(F.normalize(features, dim=-1), e.t())


#: the logit scale of a CLIP-trained tower whose own is unknown: the learned temperature is clipped
#: at 100 (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
#: Supervision", §2.5), where the released models end
CLIP_LOGIT_SCALE = 100.0


def vocabulary_scores(
    logits_cos: torch.Tensor,
    logit_scale: Optional[float] = None,
    logit_bias: Optional[float] = None,
) -> torch.Tensor:
    """Class probabilities of cosine similarities, as the text tower was trained to give them
    (docs/open_vocabulary.md §8, §13).

    - With a bias (sigmoid-trained towers: SigLIP, Zhai et al. 2023, "Sigmoid Loss for Language
      Image Pre-Training"): ``sigmoid(scale * cos + bias)``, each class on its own (rows need
      not sum to 1).
    - Without (CLIP's softmax contrastive loss): ``softmax(scale * cos)`` over the K classes.

    The ranking, and so every argmax metric, does not depend on the scale or the bias.

    Args:
        logits_cos (Tensor): (..., K) cosine similarities (:func:`cosine_logits` with
            temperature 1).
        logit_scale (float): the tower's multiplier ``exp(logit_scale parameter)``; None:
            :data:`CLIP_LOGIT_SCALE`.
        logit_bias (float): the tower's sigmoid bias; None: softmax.
    Returns:
        Tensor: (..., K) probabilities in float32.
    """
    scale = CLIP_LOGIT_SCALE if logit_scale is None else float(logit_scale)
    logits = scale * logits_cos.float()
    if logit_bias is not None:
        return torch.sigmoid(logits + float(logit_bias))
    return logits.softmax(dim=-1)


def _optional_float(value: Any, what: str) -> Optional[float]:
    if value is None or isinstance(value, (int, float)):
        return None if value is None else float(value)
    value = torch.as_tensor(value)
    if value.numel() != 1:
        raise ValueError(f"{what} must be a number, got a tensor of shape {tuple(value.shape)}")
    return float(value.reshape(-1)[0])


def class_synonyms(name: str, *, clean: bool = False) -> List[str]:
    """The synonyms of a class name in the ``"a, b, c"`` convention (ADE20K's, Cat-Seg's).

    Args:
        name (str): a class name such as ``"car, auto, automobile"``.
        clean (bool): also lower-case, drop COCO panoptic's ``-merged`` / ``-other`` / ``-stuff``
            suffixes and read ``-`` as a space ("wall-other-merged" -> "wall"), dropping
            duplicates; this is how synonyms are compared across datasets.
    Returns:
        list[str]: the non-empty parts, stripped (at least one: the stripped name itself).
    """
    out: List[str] = []
    for syn in str(name).split(","):
        syn = syn.strip()
        if clean:
            syn = syn.lower()
            while syn.endswith(_NAME_SUFFIXES):
                syn = syn[: syn.rindex("-")]
            syn = syn.replace("-", " ").strip()
        if syn and syn not in out:
            out.append(syn)
    if not out:
        if not str(name).strip():
            raise ValueError(f"empty class name {name!r}")
        out = [str(name).strip()]
    return out


def seen_by_synonyms(class_names: Sequence[str], seen_names: Sequence[str]) -> List[bool]:
    """Whether each class was seen in training: one of its cleaned synonyms equals one of a seen
    class, e.g. ADE20K's "car, auto, automobile" against COCO's "car"."""
    seen = {s for n in seen_names for s in class_synonyms(n, clean=True)}
    return [any(s in seen for s in class_synonyms(n, clean=True)) for n in class_names]


def parse_class_list(text: str) -> Tuple[str, ...]:
    """``"red circle, dog ,cat"`` -> ("red circle", "dog", "cat"); empty entries are errors."""
    names = tuple(s.strip() for s in str(text).split(","))
    if not str(text).strip() or any(not n for n in names):
        raise ValueError(f"bad class list {text!r}: use comma-separated non-empty names")
    return names


def read_embeddings(source: EmbeddingSource) -> Union[torch.Tensor, Mapping[str, torch.Tensor]]:
    """Stored text embeddings: a tensor as it is, a ``.npy`` file as a tensor, a ``.pt`` file as
    the tensor or ``{name: vector}`` dict it holds (read with ``weights_only``)."""
    if isinstance(source, str):
        if not os.path.isfile(source):
            raise FileNotFoundError(
                f"text-embedding file {source!r} not found; write one with "
                "tools/dump_text_embeddings.py"
            )
        if source.endswith(".npy"):
            return torch.from_numpy(np.load(source))
        source = torch.load(source, map_location="cpu", weights_only=True)
    if isinstance(source, np.ndarray):
        return torch.from_numpy(source)
    if isinstance(source, (torch.Tensor, Mapping)):
        return source
    raise TypeError(
        f"embeddings: expected a path, a {{name: vector}} dict or a tensor; got "
        f"{type(source).__name__}"
    )


def _as_bool_mask(names: Sequence[str], chosen: Optional[Sequence[str]], what: str) -> torch.Tensor:
    if chosen is None:
        return torch.ones(len(names), dtype=torch.bool)
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise ValueError(f"{what} not in the vocabulary: {unknown[:10]}")
    chosen = set(chosen)
    return torch.tensor([n in chosen for n in names], dtype=torch.bool)


@dataclass(frozen=True)
class Vocabulary:
    """K classes and their unit text embeddings.

    Attributes:
        class_names (tuple[str]): the K names (index = class id).
        embeddings (Tensor): (K, D) unit text embeddings, or (K, P, D) with one embedding per
            prompt template (Cat-Seg's cost volume has one channel per template).
        background (Tensor or None): (D,) unit embedding of "background" for detectors that
            classify it (F-ViT); None when not built.
        synonyms (tuple[tuple[str]]): per class, the names that were embedded (and averaged).
        seen_mask (Tensor): (K,) bool, True for classes seen in training (base classes).
        thing_ids (tuple[int]): the class ids that are things (the rest are stuff).
        logit_scale (float or None): the text tower's logit multiplier (``exp`` of the
            checkpoint's ``logit_scale``); None when unknown (stored embeddings).
        logit_bias (float or None): the sigmoid bias of sigmoid-trained towers (SigLIP); None
            for CLIP-trained ones. Both only set how :func:`vocabulary_scores` turns cosines
            into probabilities.
    """

    class_names: Tuple[str, ...]
    embeddings: torch.Tensor
    background: Optional[torch.Tensor] = None
    synonyms: Tuple[Tuple[str, ...], ...] = ()
    seen_mask: torch.Tensor = None
    thing_ids: Tuple[int, ...] = None
    logit_scale: Optional[float] = None
    logit_bias: Optional[float] = None

    def __post_init__(self):
        names = tuple(str(n) for n in self.class_names)
        K = len(names)
        if K == 0:
            raise ValueError("empty vocabulary: give at least one class name")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate class names in the vocabulary: {dup}")
        emb = torch.as_tensor(self.embeddings)
        if emb.dim() not in (2, 3) or emb.shape[0] != K:
            raise ValueError(
                f"vocabulary of {K} classes needs ({K}, D) or ({K}, P, D) embeddings; got "
                f"{tuple(emb.shape)}"
            )
        if self.background is not None and self.background.shape != emb.shape[1:]:
            raise ValueError(
                f"background embedding of shape {tuple(self.background.shape)} does not match "
                f"class embeddings {tuple(emb.shape[1:])}"
            )
        synonyms = tuple(tuple(s) for s in self.synonyms) or tuple((n,) for n in names)
        if len(synonyms) != K:
            raise ValueError(f"{len(synonyms)} synonym lists for {K} classes")
        seen = torch.ones(K, dtype=torch.bool) if self.seen_mask is None else self.seen_mask
        if tuple(seen.shape) != (K,) or seen.dtype != torch.bool:
            raise ValueError(f"seen_mask must be a ({K},) bool tensor")
        things = tuple(range(K)) if self.thing_ids is None else tuple(
            sorted(int(i) for i in self.thing_ids))
        bad = [i for i in things if not 0 <= i < K]
        if bad:
            raise ValueError(f"thing ids {bad[:5]} outside the vocabulary's 0..{K - 1}")
        scale = _optional_float(self.logit_scale, "logit_scale")
        if scale is not None and scale <= 0:
            raise ValueError(f"logit_scale is a multiplier (exp of the parameter): got {scale}")
        bias = _optional_float(self.logit_bias, "logit_bias")
        for key, value in (("class_names", names), ("embeddings", emb), ("synonyms", synonyms),
                           ("seen_mask", seen), ("thing_ids", things), ("logit_scale", scale),
                           ("logit_bias", bias)):
            object.__setattr__(self, key, value)

    # ------------------------------------------------------------------ sizes
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_templates(self) -> int:
        """P: 1 for (K, D) embeddings."""
        return 1 if self.embeddings.dim() == 2 else int(self.embeddings.shape[1])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[-1])

    # ------------------------------------------------------------------ views
    @property
    def class_embeddings(self) -> torch.Tensor:
        """(K, D) unit embeddings (per-template ones averaged over templates and normalised)."""
        if self.embeddings.dim() == 2:
            return self.embeddings
        return F.normalize(self.embeddings.mean(dim=1), dim=-1)

    @property
    def template_embeddings(self) -> torch.Tensor:
        """(K, P, D) unit embeddings (P = 1 for a (K, D) vocabulary)."""
        return self.embeddings if self.embeddings.dim() == 3 else self.embeddings[:, None]

    def with_background(self) -> torch.Tensor:
        """(K + 1, D): the class embeddings with the background row last (F-ViT's classifier)."""
        if self.background is None:
            raise ValueError(
                "this vocabulary has no background embedding; build it with background=True "
                "(text encoder) or give embeddings with a 'background' row"
            )
        bg = self.background if self.background.dim() == 1 else F.normalize(
            self.background.mean(dim=0), dim=-1)
        return torch.cat([self.class_embeddings, bg[None].to(self.embeddings.dtype)])

    def scores(self, logits_cos: torch.Tensor) -> torch.Tensor:
        """:func:`vocabulary_scores` with this vocabulary's logit scale and bias."""
        return vocabulary_scores(logits_cos, self.logit_scale, self.logit_bias)

    # ------------------------------------------------------------------ splits
    @property
    def seen_classes(self) -> Tuple[str, ...]:
        return tuple(n for n, s in zip(self.class_names, self.seen_mask.tolist()) if s)

    @property
    def unseen_classes(self) -> Tuple[str, ...]:
        """Classes not seen in training (OV-COCO's novel classes)."""
        return tuple(n for n, s in zip(self.class_names, self.seen_mask.tolist()) if not s)

    @property
    def thing_mask(self) -> torch.Tensor:
        """(K,) bool, True for thing classes."""
        mask = torch.zeros(self.num_classes, dtype=torch.bool)
        mask[list(self.thing_ids)] = True
        return mask

    @property
    def thing_classes(self) -> Tuple[str, ...]:
        return tuple(self.class_names[i] for i in self.thing_ids)


def _rows_by_name(source: Mapping[str, Any], names: Sequence[str]) -> torch.Tensor:
    missing = [n for n in names if n not in source]
    if missing:
        raise KeyError(
            f"text-embedding dict lacks {len(missing)} of the vocabulary's names, e.g. "
            f"{missing[:5]}; it has {len(source)} keys, e.g. {list(source)[:5]}"
        )
    return torch.stack([torch.as_tensor(source[n]).float().flatten() for n in names])


def _split_stored(source, names: Sequence[str], background: bool):
    """(class embeddings (K, ...), background or None) of stored embeddings."""
    K = len(names)
    if isinstance(source, Mapping):
        emb = _rows_by_name(source, names)
        bg = _rows_by_name(source, ["background"])[0] if "background" in source else None
        return emb, bg
    emb = torch.as_tensor(source).float()
    if emb.dim() == 2 and emb.shape[0] == K + 1:
        return emb[:K], emb[K]  # the authors' layout: background last
    if emb.dim() in (2, 3) and emb.shape[0] == K:
        if background and emb.dim() == 2:
            raise ValueError(
                f"embeddings of shape {tuple(emb.shape)} for {K} classes have no background "
                f"row: give ({K + 1}, D) with background last, or a dict with 'background'"
            )
        return emb, None
    raise ValueError(
        f"embeddings of shape {tuple(emb.shape)} do not fit {K} classes: give ({K}, D), "
        f"({K + 1}, D) with background last, or ({K}, P, D)"
    )


def build_vocabulary(
    class_names: Sequence[str],
    *,
    synonyms: Optional[Sequence[Sequence[str]]] = None,
    seen_classes: Optional[Sequence[str]] = None,
    thing_classes: Optional[Sequence[str]] = None,
    embeddings: Optional[EmbeddingSource] = None,
    text_encoder: Optional[Callable[..., torch.Tensor]] = None,
    per_template: bool = False,
    templates: Optional[Union[str, Sequence[str]]] = None,
    background: bool = True,
    logit_scale: Optional[float] = None,
    logit_bias: Optional[float] = None,
) -> Vocabulary:
    """A :class:`Vocabulary` from class names and either stored embeddings or a text encoder.

    Args:
        class_names (list[str]): the K classes.
        synonyms (list[list[str]]): per class, the names to embed (averaged); default: the name.
        seen_classes (list[str]): classes seen in training; default: all.
        thing_classes (list[str]): thing classes; default: all.
        embeddings: stored embeddings (see :func:`read_embeddings`): a ``{name: vector}`` dict
            (any order; its "background" entry is used when present), a (K, D) / (K + 1, D)
            (background last) / (K, P, D) tensor, or a file with one. Rows are L2-normalised.
        text_encoder: used when ``embeddings`` is None, e.g. a
            :class:`clipself.modeling.TextClassifier`: ``text_encoder(synonyms,
            background=...) -> (K[+1], D)`` and, for ``per_template``,
            ``text_encoder.embed_per_template(synonyms, templates) -> (K, P, D)``.
        per_template (bool): one embedding per prompt template (Cat-Seg).
        templates: the templates of ``per_template`` (None: the encoder's own).
        background (bool): also embed "background" (detectors classify it).
        logit_scale, logit_bias (float): see :class:`Vocabulary`; None: the text encoder's
            ``logit_scale`` / ``logit_bias`` attributes when it has them (a
            :class:`~clipself.modeling.TextClassifier` does), else None.
    """
    names = tuple(str(n) for n in class_names)
    syn = tuple(tuple(s) for s in synonyms) if synonyms is not None else tuple((n,) for n in names)
    seen = _as_bool_mask(names, seen_classes, "seen classes")
    things = None if thing_classes is None else [
        i for i, m in enumerate(_as_bool_mask(names, thing_classes, "thing classes").tolist()) if m]
    bg = None
    if embeddings is not None:
        emb, bg = _split_stored(read_embeddings(embeddings), names, background and not per_template)
        if per_template and emb.dim() == 2:
            emb = emb[:, None]
    elif text_encoder is None:
        raise ValueError("build_vocabulary: give embeddings or a text_encoder")
    elif per_template:
        emb = text_encoder.embed_per_template([list(s) for s in syn], templates)
    else:
        emb = torch.as_tensor(text_encoder([list(s) for s in syn], background=background)).float()
        emb, bg = (emb[:-1], emb[-1]) if background else (emb, None)
    emb = F.normalize(torch.as_tensor(emb).float(), dim=-1)
    bg = None if bg is None else F.normalize(bg.float(), dim=-1)
    if embeddings is None and logit_scale is None:  # the tower that embedded the names
        logit_scale = getattr(text_encoder, "logit_scale", None)
    if embeddings is None and logit_bias is None:
        logit_bias = getattr(text_encoder, "logit_bias", None)
    return Vocabulary(class_names=names, embeddings=emb, background=bg, synonyms=syn,
                      seen_mask=seen, thing_ids=things, logit_scale=logit_scale,
                      logit_bias=logit_bias)
