"""Procedural "stuff" textures of the synthetic world (vectorised numpy, no Python pixel loops).

Every texture is a function ``(rng, height, width) -> float32 array (H, W, 3)`` in ``[0, 255]``
drawn from the generator ``rng`` only, so a scene is reproducible from its seed. Each class has a
distinctive colour *and* structure (vertical blades, horizontal waves, speckle with ripples, a
brick grid, a gradient with clouds) and all are muted, so that the saturated things stand out.
"""
from typing import Callable, Dict

import numpy as np

__all__ = ["TEXTURES", "value_noise", "fractal_noise", "render_texture"]


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def value_noise(rng: np.random.Generator, height: int, width: int, cell_h: float, cell_w: float):
    """Smooth value noise: random values on a lattice, smoothly interpolated.

    Args:
        rng (np.random.Generator): source of the lattice values.
        height, width (int): output size.
        cell_h, cell_w (float): lattice spacing in pixels along y and x (anisotropic cells give
            streaks: a large ``cell_h`` and small ``cell_w`` make vertical blades).

    Returns:
        np.ndarray: float32 (height, width) in [0, 1].
    """
    gh = int(np.ceil(height / cell_h)) + 2
    gw = int(np.ceil(width / cell_w)) + 2
    grid = rng.random((gh, gw), dtype=np.float32)
    ys = np.arange(height, dtype=np.float32) / cell_h
    xs = np.arange(width, dtype=np.float32) / cell_w
    y0 = ys.astype(np.int64)
    x0 = xs.astype(np.int64)
    fy = _smoothstep(ys - y0)[:, None]
    fx = _smoothstep(xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def fractal_noise(rng, height, width, cell, octaves=3, aspect=1.0):
    """Sum of ``octaves`` value noises, each at half the cell and half the weight; in [0, 1]."""
    out = np.zeros((height, width), np.float32)
    total = 0.0
    weight = 1.0
    for _ in range(octaves):
        out += weight * value_noise(rng, height, width, max(cell * aspect, 1.0), max(cell, 1.0))
        total += weight
        weight *= 0.5
        cell *= 0.5
    return out / total


def _lerp(a, b, t: np.ndarray) -> np.ndarray:
    """Blend colours ``a`` -> ``b`` (RGB triples) by the (H, W) map ``t``; returns (H, W, 3)."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    return a + (b - a) * t[..., None]


def _jitter(rng, colour, amount):
    return np.asarray(colour, np.float32) + rng.uniform(-amount, amount, size=3).astype(np.float32)


def grass(rng, height, width):
    """Olive green with vertical blades and darker patches."""
    blades = value_noise(rng, height, width, rng.uniform(5, 9), rng.uniform(1.2, 2.0))
    patches = fractal_noise(rng, height, width, rng.uniform(14, 24), octaves=2)
    t = np.clip(0.65 * blades + 0.55 * patches - 0.1, 0, 1)
    return _lerp(_jitter(rng, (42, 74, 28), 6), _jitter(rng, (104, 140, 52), 8), t)


def water(rng, height, width):
    """Deep blue-teal with horizontal waves and light glints on the crests."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    wobble = fractal_noise(rng, height, width, rng.uniform(12, 20), octaves=2)
    period = rng.uniform(6, 10)
    phase = rng.uniform(0, 2 * np.pi)
    waves = np.sin(2 * np.pi * (y / period + 0.12 * np.sin(x / rng.uniform(8, 14) + phase))
                   + 3.0 * wobble)
    ripples = value_noise(rng, height, width, 1.5, rng.uniform(6, 10))
    t = np.clip(0.5 * wobble + 0.25 * ripples, 0, 1)
    out = _lerp(_jitter(rng, (22, 64, 100), 5), _jitter(rng, (40, 98, 130), 6), t)
    glint = np.clip((waves - 0.75) * 4.0, 0, 1) * (0.6 + 0.4 * ripples)
    return out + glint[..., None] * (np.array([150, 190, 205], np.float32) - out) * 0.8


def sand(rng, height, width):
    """Pale beige speckle with soft diagonal ripples."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    dunes = fractal_noise(rng, height, width, rng.uniform(16, 28), octaves=2)
    ripple = np.sin((x * np.cos(theta) + y * np.sin(theta)) / rng.uniform(2.0, 3.2) + 6.0 * dunes)
    speckle = rng.random((height, width), dtype=np.float32)
    out = _lerp(_jitter(rng, (176, 152, 108), 6), _jitter(rng, (222, 204, 160), 6), dunes)
    shade = 10.0 * ripple + 22.0 * (speckle - 0.5)
    return out + shade[..., None]


def brick(rng, height, width):
    """Red-brown bricks in offset rows with light grey mortar lines."""
    bh = int(rng.integers(7, 12))
    bw = int(2 * bh + rng.integers(-1, 4))
    mortar_px = 1 if bh < 10 else 2
    y, x = np.mgrid[0:height, 0:width]
    y = y + int(rng.integers(0, bh))
    row = y // bh
    xs = x + (row % 2) * (bw // 2) + int(rng.integers(0, bw))
    col = xs // bw
    # One colour per brick from a small random table indexed by (row, col).
    table = rng.uniform(-18, 18, size=(row.max() + 1, col.max() + 1)).astype(np.float32)
    base = _jitter(rng, (150, 74, 52), 8)
    bricks = base + table[row, col][..., None] * np.array([1.0, 0.7, 0.6], np.float32)
    grain = value_noise(rng, height, width, 2.0, 2.0)
    bricks = bricks + (grain[..., None] - 0.5) * 20.0
    mortar = ((y % bh) < mortar_px) | ((xs % bw) < mortar_px)
    mortar_colour = _jitter(rng, (178, 172, 160), 6)
    return np.where(mortar[..., None], mortar_colour, bricks)


def sky(rng, height, width):
    """Light blue vertical gradient with soft white clouds."""
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None] * np.ones((1, width), np.float32)
    out = _lerp(_jitter(rng, (108, 160, 214), 8), _jitter(rng, (178, 206, 232), 6), t)
    clouds = fractal_noise(rng, height, width, rng.uniform(24, 40), octaves=3, aspect=0.6)
    lo = rng.uniform(0.45, 0.6)
    c = np.clip((clouds - lo) / 0.2, 0, 1)[..., None]
    return out + c * (np.array([246, 247, 250], np.float32) - out)


TEXTURES: Dict[str, Callable] = {
    "grass": grass,
    "water": water,
    "sand": sand,
    "brick wall": brick,
    "sky": sky,
}


def render_texture(name: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Texture ``name`` (a key of :data:`TEXTURES`) as float32 (H, W, 3) clipped to [0, 255]."""
    return np.clip(TEXTURES[name](rng, height, width), 0, 255).astype(np.float32)
