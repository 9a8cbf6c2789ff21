"""Where CLIPSelf's regions come from (docs/distillation.md §2-§3): image-patch grids and proposals,
and what a region shows (the classes under it, docs/miniature.md §3).

Pure functions on boxes. Boxes are ``(R, 4)`` float tensors, ``xyxy`` in pixels of the image they
refer to. Randomness comes from an explicit ``torch.Generator`` so that data loading stays
reproducible.
"""
import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "grid_choices",
    "grid_cells",
    "sample_grid_boxes",
    "select_proposals",
    "scale_boxes",
    "pixel_bounds",
    "region_class_areas",
    "dominant_class",
]


def grid_choices(max_split: int = 6) -> List[Tuple[int, int]]:
    """All (rows M, cols N) with ``M = 1..max_split`` and ``ceil(M/2) <= N <= min(2M, max_split)``.

    With ``max_split=6`` these are the 24 choices of docs/distillation.md §2.
    """
    return [
        (m, n)
        for m in range(1, max_split + 1)
        for n in range(math.ceil(m / 2), min(2 * m, max_split) + 1)
    ]


def grid_cells(width: float, height: float, rows: int, cols: int) -> torch.Tensor:
    """The ``rows x cols`` equal cells of a ``width x height`` image, row-major.

    Returns:
        Tensor (rows*cols, 4): xyxy boxes.
    """
    xs = torch.linspace(0, width, cols + 1, dtype=torch.float64)
    ys = torch.linspace(0, height, rows + 1, dtype=torch.float64)
    y0, x0 = torch.meshgrid(ys[:-1], xs[:-1], indexing="ij")  # (rows, cols)
    y1, x1 = torch.meshgrid(ys[1:], xs[1:], indexing="ij")
    return torch.stack([x0, y0, x1, y1], dim=-1).reshape(-1, 4).float()


def sample_grid_boxes(
    width: float,
    height: float,
    *,
    max_split: int = 6,
    max_boxes: int = 20,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """One grid choice uniformly at random, then at most ``max_boxes`` random cells of it.

    Returns:
        Tensor (R, 4), ``R <= max_boxes``: xyxy cells of the ``width x height`` image.
    """
    choices = grid_choices(max_split)
    idx = int(torch.randint(len(choices), (1,), generator=generator))
    rows, cols = choices[idx]
    cells = grid_cells(width, height, rows, cols)
    if len(cells) > max_boxes:
        keep = torch.randperm(len(cells), generator=generator)[:max_boxes]
        cells = cells[keep]
    return cells


def scale_boxes(boxes: torch.Tensor, scale) -> torch.Tensor:
    """Enlarge (or shrink) xyxy boxes (R, 4) by ``scale`` (a float, or (R, 1) per box) around
    their centres."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # (R, 2)
    half = (boxes[:, 2:] - boxes[:, :2]) * (scale / 2)  # (R, 2)
    return torch.cat([centre - half, centre + half], dim=1)


def select_proposals(
    boxes: torch.Tensor,
    width: float,
    height: float,
    *,
    max_boxes: int = 20,
    min_size: float = 8.0,
    max_size: float = 1024.0,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Proposal regions of one image (docs/distillation.md §3).

    Shuffle, keep the first ``max_boxes``, drop those with area ``< min_size**2`` or
    ``> max_size**2``; if none survive, use the dummy box ``(0, 0, W/4, H/4)``.

    Args:
        boxes (Tensor): (P, 4) xyxy proposals in image pixels.
    Returns:
        Tensor (R, 4) with ``1 <= R <= max_boxes``.
    """
    boxes = boxes.reshape(-1, 4).float()
    if len(boxes):
        boxes = boxes[torch.randperm(len(boxes), generator=generator)[:max_boxes]]
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        boxes = boxes[(area >= min_size**2) & (area <= max_size**2)]
    if len(boxes) == 0:
        boxes = torch.tensor([[0.0, 0.0, width / 4, height / 4]])
    return boxes


def pixel_bounds(boxes: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The whole pixels an xyxy box covers, as a crop cuts it (``crop_letterboxed``): corners
    rounded outwards, clipped to the image, at least one pixel wide and high.

    Returns:
        Tensor (R, 4) long: ``x0, y0, x1, y1`` with ``0 <= x0 < x1 <= width`` (same for y).
    """
    boxes = boxes.reshape(-1, 4).double()
    x0 = boxes[:, 0].floor().clamp(0, width - 1)
    y0 = boxes[:, 1].floor().clamp(0, height - 1)
    x1 = torch.maximum(boxes[:, 2].ceil(), x0 + 1).clamp(max=width)
    y1 = torch.maximum(boxes[:, 3].ceil(), y0 + 1).clamp(max=height)
    return torch.stack([x0, y0, x1, y1], dim=1).long()


def region_class_areas(
    label_map: torch.Tensor, boxes: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Pixels of each class inside each box (integral images, no loop over boxes).

    Args:
        label_map (Tensor): (H, W) integer class ids; ids outside ``[0, num_classes)`` (e.g. 255 =
            unlabeled) count for no class.
        boxes (Tensor): (R, 4) xyxy in ``label_map`` pixels, cut as :func:`pixel_bounds`.
        num_classes (int): K.
    Returns:
        Tensor (R, K) long.
    """
    h, w = label_map.shape
    labels = label_map.long()
    valid = (labels >= 0) & (labels < num_classes)
    onehot = F.one_hot(torch.where(valid, labels, 0), num_classes) * valid[..., None]  # (H, W, K)
    integral = F.pad(onehot.permute(2, 0, 1).cumsum(1).cumsum(2), (1, 0, 1, 0))  # (K, H+1, W+1)
    x0, y0, x1, y1 = pixel_bounds(boxes, w, h).unbind(1)  # (R,) each
    areas = integral[:, y1, x1] - integral[:, y0, x1] - integral[:, y1, x0] + integral[:, y0, x0]
    return areas.T.contiguous()  # (R, K)


def dominant_class(
    label_map: torch.Tensor, boxes: torch.Tensor, num_classes: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The label of a region that is not an object box: its class of largest area
    (docs/miniature.md §3).

    Returns:
        (Tensor (R,) long class ids, the lowest id on ties; Tensor (R,) float: the dominant
        class's share of the box's pixels, unlabeled pixels included, i.e. how pure the box is).
    """
    areas = region_class_areas(label_map, boxes, num_classes)  # (R, K)
    h, w = label_map.shape
    x0, y0, x1, y1 = pixel_bounds(boxes, w, h).unbind(1)
    total = ((x1 - x0) * (y1 - y0)).double()  # (R,)
    best, labels = areas.max(dim=1)
    return labels, (best.double() / total).float()
