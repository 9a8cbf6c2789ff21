"""A picture of a few scenes with their boxes (base things blue, novel things red)."""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from .world import generate_scene

__all__ = ["render_preview"]

BASE_BOX = (40, 90, 255)
NOVEL_BOX = (255, 40, 40)


def render_preview(
    seed: int = 0,
    split: str = "train",
    indices: Sequence[int] = tuple(range(16)),
    cols: int = 4,
    cell: int = 200,
    scale: int = 2,
    image_size: Optional[Union[int, Tuple[int, int]]] = None,
) -> np.ndarray:
    """Grid of scenes (each pasted top-left into a ``cell`` px square) with visible-mask boxes.

    Returns:
        np.ndarray: uint8 (rows * cell * scale, cols * cell * scale, 3) RGB image.
    """
    rows = (len(indices) + cols - 1) // cols
    grid = Image.new("RGB", (cols * cell, rows * cell), (255, 255, 255))
    for k, i in enumerate(indices):
        scene = generate_scene(seed, split, i, image_size)
        im = Image.fromarray(scene["image"])
        draw = ImageDraw.Draw(im)
        for t in scene["things"]:
            x, y, w, h = t["bbox"]
            colour = NOVEL_BOX if t["novel"] else BASE_BOX
            draw.rectangle([x - 1, y - 1, x + w, y + h], outline=colour)
        grid.paste(im.crop((0, 0, min(cell, im.width), min(cell, im.height))),
                   ((k % cols) * cell, (k // cols) * cell))
    if scale != 1:
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    return np.asarray(grid)
