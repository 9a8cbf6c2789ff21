"""Vocabularies of registered datasets: class names, seen classes and thing ids from Detectron2's
``MetadataCatalog``, embedded by a text encoder the caller gives (the data side knows no model).

Metadata conventions read here:

* ``thing_classes``: detection datasets (every class is a thing); ``stuff_classes``: panoptic and
  semantic datasets, where it lists every class (things first in Detectron2's panoptic
  convention) and ``thing_dataset_id_to_contiguous_id`` names the things.
* ``seen_classes`` (what a segmentation training split annotates) or ``base_classes`` (OV-COCO,
  OV-LVIS and the synthetic world): the classes seen in training.
"""
from typing import List, Optional, Sequence, Union

from detectron2.data import MetadataCatalog

from ..structures import Vocabulary, build_vocabulary, class_synonyms, seen_by_synonyms

__all__ = ["dataset_vocabulary", "dataset_class_names", "dataset_seen_classes"]


def dataset_class_names(dataset_name: str, classes: str = "thing_classes") -> List[str]:
    """The class names of a registered dataset under the metadata key ``classes``."""
    if classes not in ("thing_classes", "stuff_classes"):
        raise ValueError(f"classes={classes!r}; use 'thing_classes' or 'stuff_classes'")
    meta = MetadataCatalog.get(dataset_name)
    names = list(meta.get(classes, None) or [])
    if not names:
        raise ValueError(
            f"dataset {dataset_name!r} has no (or an empty) {classes!r} in its metadata; is it "
            "registered (import clipself) and is it the right kind of dataset?"
        )
    return names


def dataset_seen_classes(dataset_name: str, classes: str = "thing_classes") -> Optional[List[str]]:
    """The classes seen in training of a dataset: its ``seen_classes``, else ``base_classes``
    metadata; None when it has neither."""
    meta = MetadataCatalog.get(dataset_name)
    seen = meta.get("seen_classes", None) or meta.get("base_classes", None)
    return None if seen is None else list(seen)


def _thing_classes(dataset_name: str, classes: str) -> Optional[List[str]]:
    """The thing classes of a dataset (None: all of them)."""
    if classes == "thing_classes":
        return None  # every class of a detection dataset is a thing
    meta = MetadataCatalog.get(dataset_name)
    table = meta.get("thing_dataset_id_to_contiguous_id", None)
    if table is None:
        return []  # a semantic-segmentation dataset: stuff only
    names = dataset_class_names(dataset_name, classes)
    return [names[int(i)] for i in sorted(table.values()) if int(i) < len(names)]


def dataset_vocabulary(
    dataset_name: Optional[str] = None,
    *,
    class_names: Optional[Sequence[str]] = None,
    text_encoder=None,
    embeddings=None,
    classes: str = "thing_classes",
    clean_names: bool = False,
    seen_classes: Optional[Sequence[str]] = None,
    seen_dataset: Optional[str] = None,
    per_template: bool = False,
    templates: Optional[Union[str, Sequence[str]]] = None,
    background: bool = True,
) -> Vocabulary:
    """The :class:`Vocabulary` of a registered dataset.

    Args:
        dataset_name (str): a registered dataset.
        class_names (list[str]): the classes instead of the dataset's (a custom vocabulary; a
            dataset, if also given, still tells which of them are seen and things).
        text_encoder: embeds the classes (e.g. :class:`clipself.modeling.TextClassifier`), see
            :func:`clipself.structures.build_vocabulary`.
        embeddings: stored embeddings instead of a text encoder.
        classes (str): "thing_classes" (detection) or "stuff_classes" (panoptic, semantic,
            region recognition: every class).
        clean_names (bool): embed each class from its cleaned synonyms (lower case, COCO's
            ``-merged``/``-other``/``-stuff`` suffixes dropped: the panoptic head's prompts);
            otherwise from the ``"a, b"`` synonyms as written.
        seen_classes (list[str]): classes seen in training, matched by synonym.
        seen_dataset (str): the training dataset: its seen classes (``seen_classes`` /
            ``base_classes`` metadata, else all its classes) matched by synonym, e.g. COCO's
            classes when evaluating on ADE20K.
            Without either, this dataset's own ``seen_classes`` / ``base_classes`` (exact names)
            or, when it has none, all classes.
        per_template (bool), templates: one embedding per prompt template (Cat-Seg).
        background (bool): also embed "background" (F-ViT classifies it).
    """
    if seen_classes is not None and seen_dataset is not None:
        raise ValueError("give seen_classes or seen_dataset, not both")
    if dataset_name is None and class_names is None:
        raise ValueError("dataset_vocabulary: give dataset_name or class_names")
    names = (dataset_class_names(dataset_name, classes) if class_names is None
             else [str(n) for n in class_names])
    if seen_dataset is not None:
        seen_classes = (dataset_seen_classes(seen_dataset, classes)
                        or dataset_class_names(seen_dataset, classes))
    if seen_classes is not None:
        seen = [n for n, s in zip(names, seen_by_synonyms(names, seen_classes)) if s]
    else:
        own = None if dataset_name is None else dataset_seen_classes(dataset_name, classes)
        seen = None if own is None else [n for n in names if n in set(own)]
    things = None if dataset_name is None else _thing_classes(dataset_name, classes)
    synonyms = [class_synonyms(n, clean=clean_names) for n in names]
    return build_vocabulary(
        names, synonyms=synonyms, seen_classes=seen,
        thing_classes=None if things is None else [n for n in names if n in set(things)],
        embeddings=embeddings,
        text_encoder=text_encoder, per_template=per_template, templates=templates,
        background=background,
    )
