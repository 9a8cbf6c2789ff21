"""Vocabularies of registered datasets and their text embeddings."""
from typing import List

import torch
from detectron2.data import MetadataCatalog

__all__ = ["dataset_class_names", "dataset_text_embeddings"]


def dataset_class_names(dataset_name: str, key: str = "thing_classes") -> List[str]:
    """Class names of a registered dataset (``thing_classes`` or ``stuff_classes``)."""
    meta = MetadataCatalog.get(dataset_name)
    if not hasattr(meta, key):
        raise KeyError(f"dataset {dataset_name!r} has no metadata {key!r}")
    names = list(getattr(meta, key))
    if not names:
        raise ValueError(f"dataset {dataset_name!r} has an empty {key!r}")
    return names


def dataset_text_embeddings(
    dataset_name: str, classifier, key: str = "thing_classes", background: bool = False
) -> torch.Tensor:
    """Text embeddings (K[+1], D) of a dataset's classes, in its contiguous order.

    Args:
        dataset_name (str): a registered dataset.
        classifier (TextClassifier): produces the embeddings (templates, weights, cache).
        key (str): ``thing_classes`` (detection) or ``stuff_classes`` (all panoptic classes).
        background (bool): append the "background" embedding.
    """
    return classifier(dataset_class_names(dataset_name, key), background=background)
