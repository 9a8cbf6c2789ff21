"""Pictures: K-Means maps of dense features, side-by-side panels, which detections to draw."""
from typing import List, Optional, Sequence

import numpy as np
import torch
from detectron2.utils.colormap import colormap
from PIL import Image, ImageDraw
from torchvision.ops import box_area, nms

from .kmeans import kmeans

__all__ = ["palette", "kmeans_map", "side_by_side", "intersection_over_smaller", "agnostic_nms"]


def palette(n: int) -> np.ndarray:
    """``n`` distinct RGB colours (uint8, (n, 3)): Detectron2's colour map, repeated past its
    length."""
    table = colormap(rgb=True, maximum=255).astype(np.uint8)  # (74, 3)
    return table[np.arange(n) % len(table)]


def kmeans_map(
    dense: torch.Tensor,
    k: int,
    *,
    valid_hw: Optional[Sequence[int]] = None,
    out_size: Optional[Sequence[int]] = None,
    seed: int = 0,
) -> Image.Image:
    """Colour each location of a dense map by its K-Means cluster.

    Args:
        dense (Tensor): (D, h, w) features of one image.
        k (int): clusters.
        valid_hw (tuple): (h', w') top-left part of the map that covers the image (the rest is
            padding: excluded from clustering and drawn black).
        out_size (tuple): (W, H) of the returned picture (nearest upsampling).
    Returns:
        PIL RGB image.
    """
    d, h, w = dense.shape
    vh, vw = valid_hw if valid_hw is not None else (h, w)
    feats = dense[:, :vh, :vw].reshape(d, -1).T  # (vh*vw, D)
    labels, _ = kmeans(feats, k, seed=seed)
    colours = palette(k)
    canvas = np.zeros((h, w, 3), dtype=np.uint8)
    canvas[:vh, :vw] = colours[labels.numpy()].reshape(vh, vw, 3)
    img = Image.fromarray(canvas)
    if out_size is not None:
        img = img.resize(tuple(out_size), Image.NEAREST)
    return img


def side_by_side(
    rows: List[List[Image.Image]], titles: Sequence[str], cell: int = 256
) -> Image.Image:
    """Tile pictures in a grid of ``cell``-sized squares with a title per column."""
    n_cols = max(len(r) for r in rows)
    title_h = 18
    grid = Image.new("RGB", (n_cols * cell, title_h + len(rows) * cell), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for j, title in enumerate(titles):
        draw.text((j * cell + 4, 3), title, fill=(0, 0, 0))
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            scale = cell / max(img.size)
            im = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                            Image.NEAREST)
            grid.paste(im, (j * cell, title_h + i * cell))
    return grid


def intersection_over_smaller(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise share of the smaller box that lies in the intersection: 1 when one box holds the
    other (IoU cannot see a small box nested in a large one).

    Args:
        a (Tensor): (N, 4) xyxy.
        b (Tensor): (M, 4) xyxy.
    Returns:
        Tensor: (N, M) in [0, 1].
    """
    lt = torch.max(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    inter = (rb - lt).clamp(min=0).prod(-1)  # (N, M)
    smaller = torch.min(box_area(a)[:, None], box_area(b)[None, :])  # (N, M)
    return inter / smaller.clamp(min=1e-6)


def agnostic_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float = 0.25,
    top_k: Optional[int] = None,
    containment: Optional[float] = 0.5,
) -> torch.Tensor:
    """Which detections to draw: class-agnostic NMS, so that an object that several classes
    claim is drawn once, with its best-scoring class (as in the paper's Figure A2;
    docs/miniature.md §4).

    The detector's own NMS is per class and keeps overlapping boxes of different classes; this
    is for pictures only (detection results and metrics keep every box). Boxes of one object
    found at different sizes (a part inside the whole) overlap little by IoU, so a box is also
    dropped when ``containment`` or more of the smaller of it and a kept box lies in both.

    Args:
        boxes (Tensor): (R, 4) xyxy.
        scores (Tensor): (R,) scores.
        iou_threshold (float): a box overlapping a higher-scoring kept box by more IoU is dropped.
        top_k (int or None): keep at most this many (the best).
        containment (float or None): drop a box when this share of the smaller of it and a
            higher-scoring kept box is their intersection (:func:`intersection_over_smaller`);
            None: IoU only.
    Returns:
        Tensor (R',) long: indices into ``boxes``, by decreasing score.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    scores = torch.as_tensor(scores, dtype=torch.float32).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    keep = nms(boxes, scores, float(iou_threshold))
    if containment is not None and len(keep) > 1:
        nested = intersection_over_smaller(boxes[keep], boxes[keep]) >= float(containment)
        kept: List[int] = []
        for i in range(len(keep)):  # greedy, by decreasing score (nms' order)
            if not kept or not bool(nested[i, kept].any()):
                kept.append(i)
        keep = keep[kept]
    return keep[:top_k] if top_k is not None else keep
