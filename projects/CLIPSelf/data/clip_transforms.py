"""Image pipeline of CLIPSelf (docs/distillation.md §2-§5): the student's padded square and teacher
crops.

* Student image: bicubic resize so that the longest side is ``size``, then pad right/bottom with
  black to ``size x size`` (the boxes keep their coordinates up to the resize factor).
* Teacher crop: the region cut from the *original* image, bicubic resize of its longest side to
  ``crop_size`` (aspect kept), centred on a black ``crop_size`` square (open_clip ResizeMaxSize).

Both return uint8 ``(3, H, W)`` tensors: the model normalises with CLIP mean/std, so black padding
becomes ``-mean/std`` exactly as in the authors' pipeline (pad, then normalise).
"""
from typing import Tuple

import numpy as np
import torch
from PIL import Image

__all__ = ["resize_longest_pad", "letterbox", "crop_letterboxed", "to_chw_uint8"]


def to_chw_uint8(image: Image.Image) -> torch.Tensor:
    """PIL RGB image -> uint8 tensor (3, H, W)."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    return torch.from_numpy(array).permute(2, 0, 1)


def resize_longest_pad(image: Image.Image, size: int) -> Tuple[torch.Tensor, float]:
    """Student image: longest side -> ``size`` (bicubic), pad right/bottom with black.

    Returns:
        (Tensor (3, size, size) uint8, float scale = new / old).
    """
    w, h = image.size
    scale = size / max(w, h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = image.convert("RGB").resize((new_w, new_h), Image.BICUBIC)
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    canvas.paste(resized, (0, 0))
    return to_chw_uint8(canvas), scale


def letterbox(image: Image.Image, size: int) -> torch.Tensor:
    """Teacher crop: longest side -> ``size`` (bicubic, aspect kept), centred on black.

    Own version: open_clip 3.x has no resize-and-pad transform, and its ``ResizeKeepRatio``
    (``longest=1``) rounds a thin crop's short side to 0 px and fails; here it keeps >= 1 px.

    Returns:
        Tensor (3, size, size) uint8.
    """
    w, h = image.size
    scale = size / max(w, h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = image.convert("RGB").resize((new_w, new_h), Image.BICUBIC)
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    canvas.paste(resized, ((size - new_w) // 2, (size - new_h) // 2))
    return to_chw_uint8(canvas)


def crop_letterboxed(image: Image.Image, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Cut each xyxy box (pixels of ``image``) and letterbox it to ``size``.

    Boxes are clipped to the image and rounded outwards to whole pixels; a degenerate box becomes
    at least one pixel, so nothing crashes on zero-size or out-of-image boxes.

    Returns:
        Tensor (R, 3, size, size) uint8.
    """
    w, h = image.size
    crops = []
    for x0, y0, x1, y1 in boxes.tolist():
        x0, y0 = int(np.clip(np.floor(x0), 0, w - 1)), int(np.clip(np.floor(y0), 0, h - 1))
        x1, y1 = int(np.clip(np.ceil(x1), x0 + 1, w)), int(np.clip(np.ceil(y1), y0 + 1, h))
        crops.append(letterbox(image.crop((x0, y0, x1, y1)), size))
    if not crops:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return torch.stack(crops)
