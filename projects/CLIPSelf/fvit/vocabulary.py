"""Detection vocabularies: class names, their text embeddings and the base/novel split.

The vocabulary is data, not weights: an F-ViT trained on one class list detects any other
(:meth:`clipself.fvit.FViT.set_vocabulary`), and the embeddings are never stored in checkpoints.
"""
import os
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

__all__ = ["Vocabulary", "build_vocabulary", "class_loss_weights", "parse_class_list"]

EmbeddingSource = Union[str, Mapping[str, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Vocabulary:
    """K class names, (K+1, D) unit text embeddings (background last) and a (K,) base mask."""

    class_names: Tuple[str, ...]
    embeddings: torch.Tensor
    base_mask: torch.Tensor

    def __post_init__(self):
        K = len(self.class_names)
        if K == 0:
            raise ValueError("empty vocabulary: give at least one class name")
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != K + 1:
            raise ValueError(
                f"vocabulary of {K} classes needs ({K + 1}, D) embeddings (background last); "
                f"got {tuple(self.embeddings.shape)}"
            )
        if self.base_mask.shape != (K,) or self.base_mask.dtype != torch.bool:
            raise ValueError(f"base_mask must be a ({K},) bool tensor")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def novel_classes(self) -> Tuple[str, ...]:
        return tuple(n for n, b in zip(self.class_names, self.base_mask.tolist()) if not b)


def parse_class_list(text: str) -> Tuple[str, ...]:
    """``"red circle, dog ,cat"`` -> ("red circle", "dog", "cat"); empty entries are errors."""
    names = tuple(s.strip() for s in text.split(","))
    if not text.strip() or any(not n for n in names):
        raise ValueError(f"bad class list {text!r}: use comma-separated non-empty names")
    return names


def _load_embedding_source(source: EmbeddingSource):
    if isinstance(source, str):
        if not os.path.isfile(source):
            raise FileNotFoundError(
                f"text-embedding file {source!r} not found; write one with "
                "tools/dump_text_embeddings.py"
            )
        source = torch.load(source, map_location="cpu", weights_only=True)
    return source


def _select_embeddings(source, names: Sequence[str]) -> torch.Tensor:
    source = _load_embedding_source(source)
    if isinstance(source, torch.Tensor):
        return source.float()
    if isinstance(source, Mapping):
        wanted = list(names) + ["background"]
        missing = [n for n in wanted if n not in source]
        if missing:
            raise KeyError(
                f"text-embedding dict lacks {len(missing)} of the vocabulary's names, e.g. "
                f"{missing[:5]}; it has {len(source)} keys, e.g. {list(source)[:5]}"
            )
        return torch.stack([torch.as_tensor(source[n]).float().flatten() for n in wanted])
    raise TypeError(f"embeddings: expected a path, a dict or a tensor; got {type(source)}")


def build_vocabulary(
    *,
    class_names: Optional[Sequence[str]] = None,
    dataset_name: Optional[str] = None,
    base_classes: Optional[Sequence[str]] = None,
    embeddings: Optional[EmbeddingSource] = None,
    text_encoder: Optional[Callable[..., torch.Tensor]] = None,
) -> Vocabulary:
    """A :class:`Vocabulary` from names and either stored embeddings or a text encoder.

    Args:
        class_names (list[str]): the K classes; default: ``thing_classes`` of ``dataset_name``.
        dataset_name (str): a registered dataset supplying names and ``base_classes``.
        base_classes (list[str]): names seen in training; default: the dataset's
            ``base_classes``, else all classes.
        embeddings: the authors' ``.pt`` dict (name -> (D,), "background" included, any order),
            a path to one, or a (K+1, D) tensor with background last. Rows are L2-normalised.
        text_encoder (callable): ``text_encoder(names, background=True) -> (K+1, D)``, e.g. a
            :class:`clipself.modeling.TextClassifier`; used when ``embeddings`` is None.
    """
    meta = None
    if dataset_name is not None:
        from detectron2.data import MetadataCatalog

        meta = MetadataCatalog.get(dataset_name)
    if class_names is None:
        if meta is None or not getattr(meta, "thing_classes", None):
            raise ValueError("build_vocabulary: give class_names or a dataset with thing_classes")
        class_names = meta.thing_classes
    names = tuple(str(n) for n in class_names)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate class names in the vocabulary: {dup}")
    if base_classes is None and meta is not None:
        base_classes = getattr(meta, "base_classes", None)
    if base_classes is None:
        base_mask = torch.ones(len(names), dtype=torch.bool)
    else:
        unknown = sorted(set(base_classes) - set(names))
        if unknown:
            raise ValueError(f"base classes not in the vocabulary: {unknown[:10]}")
        base = set(base_classes)
        base_mask = torch.tensor([n in base for n in names], dtype=torch.bool)
    if embeddings is not None:
        emb = _select_embeddings(embeddings, names)
    elif text_encoder is not None:
        emb = text_encoder(list(names), background=True)
    else:
        raise ValueError("build_vocabulary: give embeddings or a text_encoder")
    emb = F.normalize(torch.as_tensor(emb).float(), dim=-1)
    return Vocabulary(class_names=names, embeddings=emb, base_mask=base_mask)


def class_loss_weights(base_mask: torch.Tensor, background_weight: float) -> torch.Tensor:
    """Cross-entropy class weights (spec §4.4): base 1, novel 0, background last.

    Args:
        base_mask (Tensor): (K,) bool.
        background_weight (float): 0.6 on OV-COCO, 0.9 on OV-LVIS.
    Returns:
        Tensor: (K+1,) float32.
    """
    w = base_mask.float()
    return torch.cat([w, w.new_tensor([background_weight])])
