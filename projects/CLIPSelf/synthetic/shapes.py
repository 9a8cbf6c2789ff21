"""Shape outlines of the synthetic world's thing classes, as polygons rasterised to binary masks.

A shape of ``size`` s is drawn inside a circle of diameter about s around its centre (the polygon's
own extent is used to keep it inside the image). Coordinates are (x, y) in pixels, y pointing down.
"""
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SHAPES", "shape_polygon", "rasterize_polygon"]

SHAPES: Tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "hexagon")


def _ring(n: int, start_deg: float, radius=1.0) -> np.ndarray:
    a = np.deg2rad(start_deg + np.arange(n) * 360.0 / n)
    return np.stack([np.cos(a), np.sin(a)], axis=1) * np.asarray(radius, np.float64)[..., None]


def _unit_polygon(shape: str) -> np.ndarray:
    """(N, 2) vertices of ``shape`` centred at 0 with outer radius about 1."""
    if shape == "circle":
        return _ring(48, 0.0)
    if shape == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * 0.8
    if shape == "triangle":
        # Equilateral, pointing up; shifted so its bounding box is centred.
        return _ring(3, -90.0) + np.array([0.0, 0.25])
    if shape == "star":
        return _ring(10, -90.0, radius=np.tile([1.0, 0.45], 5))
    if shape == "cross":
        a, b = 0.34, 0.95  # half arm width, arm length
        return np.array([[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a],
                         [a, b], [-a, b], [-a, a], [-b, a], [-b, -a], [-a, -a]], np.float64)
    if shape == "hexagon":
        return _ring(6, 0.0)
    raise KeyError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def shape_polygon(shape: str, size: float, angle_deg: float = 0.0, aspect: float = 1.0):
    """Vertices of ``shape`` centred at the origin.

    Args:
        shape (str): one of :data:`SHAPES`.
        size (float): diameter of the shape's outer circle in pixels.
        angle_deg (float): rotation, counter-clockwise on screen.
        aspect (float): x is stretched by ``aspect`` and y by ``1 / aspect`` before rotating.

    Returns:
        np.ndarray: float64 (N, 2) polygon vertices (x, y).
    """
    pts = _unit_polygon(shape) * (size / 2.0)
    pts = pts * np.array([aspect, 1.0 / aspect])
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    return pts @ rot


def rasterize_polygon(points: Sequence, height: int, width: int) -> np.ndarray:
    """Binary (height, width) mask of the filled polygon ``points`` ((N, 2) pixel x, y)."""
    canvas = Image.new("L", (width, height), 0)
    xy: List[Tuple[float, float]] = [(float(x), float(y)) for x, y in points]
    ImageDraw.Draw(canvas).polygon(xy, fill=1, outline=1)
    return np.asarray(canvas, dtype=bool)
