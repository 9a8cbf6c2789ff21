"""Why a region is misclassified in the synthetic world: colour vs shape.

Thing classes are "<colour> <shape>" (:data:`~clipself.synthetic.THING_CLASSES`), so a wrong
prediction got the colour, the shape or both wrong. :func:`attribute_accuracy` splits a top-1
accuracy that way and builds the shape confusion matrix (``tools/analyze_regions.py``).
"""
from typing import Dict, Sequence

import torch

from .world import COLOURS, SHAPES

__all__ = ["class_attributes", "attribute_accuracy"]


def class_attributes(class_names: Sequence[str]) -> Dict[str, torch.Tensor]:
    """Colour and shape index of every class: (K,) long each, -1 where a class has none
    (stuff classes such as "wall")."""
    colours, shapes = list(COLOURS), list(SHAPES)
    col, shp = [], []
    for name in class_names:
        parts = name.split(" ", 1)
        is_thing = len(parts) == 2 and parts[0] in colours and parts[1] in shapes
        col.append(colours.index(parts[0]) if is_thing else -1)
        shp.append(shapes.index(parts[1]) if is_thing else -1)
    return {"colour": torch.tensor(col, dtype=torch.long),
            "shape": torch.tensor(shp, dtype=torch.long)}


def attribute_accuracy(
    pred: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str]
) -> Dict[str, object]:
    """Top-1 accuracy of thing regions split into colour and shape.

    Args:
        pred (Tensor): (R,) predicted class ids (any class, stuff included).
        labels (Tensor): (R,) ground-truth class ids of thing regions.
        class_names (list[str]): K names; things are "<colour> <shape>".
    Returns:
        dict: ``top1``, ``colour``, ``shape`` (% of regions, over all regions, not per class)
        and ``shape_confusion`` (S, S + 1) long: rows = true shape, columns = predicted shape,
        last column = a class without a shape (stuff).
    """
    attrs = class_attributes(class_names)
    true_shape = attrs["shape"][labels]  # (R,)
    if (true_shape < 0).any():
        raise ValueError("labels must be thing classes ('<colour> <shape>')")
    pred_shape = attrs["shape"][pred]  # (R,), -1 = stuff
    n = len(SHAPES)
    cells = true_shape * (n + 1) + torch.where(pred_shape < 0, n, pred_shape)
    confusion = torch.bincount(cells, minlength=n * (n + 1)).reshape(n, n + 1)
    total = max(int(labels.numel()), 1)

    def pct(hit: torch.Tensor) -> float:
        return float(hit.sum()) * 100.0 / total

    return {
        "top1": pct(pred == labels),
        "colour": pct(attrs["colour"][pred] == attrs["colour"][labels]),
        "shape": pct(pred_shape == true_shape),
        "shape_confusion": confusion,
    }
