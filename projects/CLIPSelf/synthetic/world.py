"""The synthetic world: seeded scenes of textured "stuff" and coloured "thing" shapes.

This is the project's embedded default dataset (see DESIGN.md, "The synthetic world and the toy
CLIP"): detection, panoptic and semantic annotations plus one caption per image, with a base/novel
thing split like OV-COCO.

Classes and category ids (COCO-style, fixed):

* **Things** = colour x shape, ``f"{colour} {shape}"``, colour-major: ids 1..30 are
  ``red circle, red square, red triangle, red star, red cross, red hexagon, green circle, ...,
  purple hexagon`` (:data:`THING_CLASSES`).
* **Stuff** = textured backgrounds, ids 31..35: ``grass, water, sand, brick wall, sky``
  (:data:`STUFF_CLASSES`).
* The contiguous index over things + stuff (semantic PNGs, Mask2Former ``stuff_classes``) is
  ``category_id - 1``; things come first, so a thing's contiguous detection id is the same number.
* **Novel** things (:data:`NOVEL_CLASSES`, 6): ``red circle, green square, blue triangle,
  yellow star, purple cross, blue hexagon``: one per shape, so every shape and every colour also
  occurs among the 24 **base** classes and a novel class is an unseen *combination* of known
  words. Novel objects appear in training images and captions but are never annotated in the
  training split's detection (or panoptic / semantic) annotations; validation annotates all 30.

A scene (:func:`generate_scene`) is a pure function of ``(seed, split, index)``:

1. size: height and width independently from 96..192 px in steps of 8 (or fixed by ``image_size``);
2. one stuff class, or two split by a wavy boundary (sky, if present, on top);
3. a few small non-class clutter marks (neutral colours, part of the stuff segment);
4. 1-5 things of 14-48 px, small rotation and aspect change, colour jitter, a light shading
   gradient and a dark 1 px outline. Later objects occlude earlier ones; an object whose visible
   area is below 30% of its full area or below 40 px is dropped (not drawn, not annotated), so the
   annotation is exactly the visible mask and every drawn object is annotated.
"""
import zlib
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from .shapes import SHAPES, rasterize_polygon, shape_polygon
from .textures import render_texture

__all__ = [
    "SHAPES", "COLOURS", "THING_CLASSES", "STUFF_CLASSES", "ALL_CLASSES", "NOVEL_CLASSES",
    "BASE_CLASSES", "THING_IDS", "STUFF_IDS", "CATEGORIES", "PANOPTIC_LABEL_DIVISOR",
    "IGNORE_LABEL", "scene_rng", "generate_scene", "make_caption", "panoptic_map", "semantic_map",
    "REGION_CAPTION_COVER", "REGION_CAPTION_MIN_SHARE", "REGION_CAPTION_MAX_NAMES",
    "region_caption_classes", "region_caption", "region_scene_caption",
]

#: Thing colours and their nominal RGB (each object jitters around it).
COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (218, 32, 32),
    "green": (44, 196, 58),
    "blue": (36, 72, 230),
    "yellow": (244, 214, 28),
    "purple": (150, 52, 196),
}
THING_CLASSES: Tuple[str, ...] = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)
STUFF_CLASSES: Tuple[str, ...] = ("grass", "water", "sand", "brick wall", "sky")
ALL_CLASSES: Tuple[str, ...] = THING_CLASSES + STUFF_CLASSES
NOVEL_CLASSES: Tuple[str, ...] = (
    "red circle", "green square", "blue triangle", "yellow star", "purple cross", "blue hexagon",
)
BASE_CLASSES: Tuple[str, ...] = tuple(c for c in THING_CLASSES if c not in NOVEL_CLASSES)
THING_IDS: Tuple[int, ...] = tuple(range(1, len(THING_CLASSES) + 1))
STUFF_IDS: Tuple[int, ...] = tuple(range(len(THING_CLASSES) + 1, len(ALL_CLASSES) + 1))
PANOPTIC_LABEL_DIVISOR = 1000
IGNORE_LABEL = 255

#: Representative stuff colours (panoptic category colours for visualisation).
_STUFF_COLOURS = {
    "grass": (74, 108, 40), "water": (32, 82, 116), "sand": (200, 178, 134),
    "brick wall": (150, 74, 52), "sky": (150, 184, 224),
}


def _category(cid: int, name: str) -> dict:
    if cid in THING_IDS:
        colour, shape = name.split(" ")
        return {"id": cid, "name": name, "isthing": 1, "supercategory": shape,
                "color": list(COLOURS[colour]), "shape": shape, "colour": colour,
                "split": "novel" if name in NOVEL_CLASSES else "base"}
    return {"id": cid, "name": name, "isthing": 0, "supercategory": "stuff",
            "color": list(_STUFF_COLOURS[name])}


#: All 35 categories, COCO-panoptic style (``id, name, isthing, color, supercategory``; things
#: also carry ``shape, colour, split``).
CATEGORIES: Tuple[dict, ...] = tuple(
    _category(i + 1, n) for i, n in enumerate(ALL_CLASSES)
)

# Scene parameters.
SIDE_RANGE = (96, 192)
SIDE_STEP = 8
OBJECT_SIZE_RANGE = (14.0, 48.0)
MAX_OBJECTS = 5
MIN_VISIBLE_FRACTION = 0.3
MIN_VISIBLE_AREA = 40
TWO_STUFF_PROBABILITY = 0.5
_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
_CLUTTER_COLOURS = ((28, 28, 28), (232, 232, 226), (120, 120, 120), (104, 78, 52), (196, 190, 160))
_NUMBER_WORDS = {1: "a", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven"}
_STUFF_ALONE = {"grass": "on grass", "water": "on water", "sand": "on sand",
                "brick wall": "on a brick wall", "sky": "in the sky"}
_STUFF_NOUN = {"grass": "grass", "water": "water", "sand": "sand",
               "brick wall": "a brick wall", "sky": "the sky"}


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of ``split``: an independent stream per (seed, split, i).

    Known splits have fixed codes; any other split name is hashed with CRC32 (stable across runs).
    """
    code = _SPLIT_CODES.get(split, zlib.crc32(split.encode("utf-8")) + 16)
    return np.random.default_rng(np.random.SeedSequence([int(seed), code, int(index)]))


def _plural(shape: str) -> str:
    return shape + ("es" if shape.endswith(("s", "x", "ch", "sh")) else "s")


def make_caption(thing_names: Sequence[str], stuff_names: Sequence[str]) -> str:
    """Caption mentioning every object (grouped by class, counted in words) and the background.

    >>> make_caption(["red circle", "blue star", "green cross", "blue star"], ["brick wall"])
    'a photo of a red circle, two blue stars and a green cross on a brick wall.'
    """
    counts: Dict[str, int] = {}
    for name in thing_names:
        counts[name] = counts.get(name, 0) + 1
    items = []
    for name, n in counts.items():
        colour, shape = name.rsplit(" ", 1)
        if n == 1:
            article = "an" if colour[0] in "aeiou" else "a"
            items.append(f"{article} {name}")
        else:
            items.append(f"{_NUMBER_WORDS.get(n, str(n))} {colour} {_plural(shape)}")
    if not items:
        objects = "nothing"
    elif len(items) == 1:
        objects = items[0]
    else:
        objects = ", ".join(items[:-1]) + " and " + items[-1]
    if len(stuff_names) == 1:
        where = " " + _STUFF_ALONE[stuff_names[0]]
    elif stuff_names:
        where = " against " + " and ".join(_STUFF_NOUN[s] for s in stuff_names)
    else:
        where = ""
    return f"a photo of {objects}{where}."


#: Region captions (docs/miniature.md §2): name classes by decreasing area until the named ones
#: cover this share of the region, ...
REGION_CAPTION_COVER = 0.8
#: ... never one below this share (except the largest, always named), ...
REGION_CAPTION_MIN_SHARE = 0.05
#: ... and at most this many.
REGION_CAPTION_MAX_NAMES = 3


def region_caption_classes(
    areas: Sequence[float],
    cover: float = REGION_CAPTION_COVER,
    min_share: float = REGION_CAPTION_MIN_SHARE,
    max_names: int = REGION_CAPTION_MAX_NAMES,
) -> List[int]:
    """The classes a region's caption names (docs/miniature.md §2).

    Classes are taken by decreasing area (ties: lower index first) while the ones already named
    cover less than ``cover`` of the region; a class below ``min_share`` of the region is never
    named, except the largest, which always is; at most ``max_names``.

    Args:
        areas (sequence of float): (K,) pixels of each class of :data:`ALL_CLASSES` in the region.
    Returns:
        list[int]: indices into ``areas``, largest first; empty when ``areas`` is all zero.

    >>> region_caption_classes([0, 10, 70, 15, 5])
    [2, 3]
    """
    areas = np.asarray(areas, dtype=np.float64)
    total = areas.sum()
    if total <= 0:
        return []
    order = np.argsort(-areas, kind="stable")
    named, covered = [], 0.0
    for k in order[:max_names]:
        share = areas[k] / total
        if named and (covered >= cover or share < min_share):
            break
        named.append(int(k))
        covered += share
    return named


def region_scene_caption(
    thing_names: Sequence[str],
    inside: Sequence[float],
    visible: Sequence[float],
    areas: Sequence[float],
    max_stuff: int = 2,
) -> str:
    """Caption of a region written as the world captions a scene (docs/miniature.md §2): every
    object the region shows as a scene would show it (at least ``MIN_VISIBLE_FRACTION`` of its
    visible pixels and ``MIN_VISIBLE_AREA`` pixels inside the region), counted, largest first,
    then the stuff covering at least ``REGION_CAPTION_MIN_SHARE`` of the region (at most
    ``max_stuff``, largest first), by :func:`make_caption`. A region showing no such object is
    captioned by its stuff (:func:`region_caption`), or, with neither, by
    :func:`region_caption_classes`.

    Args:
        thing_names (sequence): (O,) class names of the scene's objects.
        inside (sequence): (O,) visible pixels of each object inside the region.
        visible (sequence): (O,) visible pixels of each object in the whole scene.
        areas (sequence): (K,) pixels of each class of ``ALL_CLASSES`` inside the region.

    >>> region_scene_caption(["red square", "blue star"], [60, 10], [60, 100],
    ...                      [0] * 30 + [140, 0, 0, 0, 0])
    'a photo of a red square on grass.'
    """
    inside = np.asarray(inside, dtype=np.float64).reshape(-1)
    visible = np.asarray(visible, dtype=np.float64).reshape(-1)
    shown = [thing_names[k] for k in np.argsort(-inside, kind="stable")
             if inside[k] >= MIN_VISIBLE_FRACTION * max(visible[k], 1.0)
             and inside[k] >= MIN_VISIBLE_AREA]
    total = float(np.sum(areas))
    stuff = [i for i in np.argsort(-np.asarray(areas, dtype=np.float64), kind="stable")
             if ALL_CLASSES[i] in STUFF_CLASSES and total > 0
             and areas[i] >= REGION_CAPTION_MIN_SHARE * total][:max_stuff]
    stuff_names = [ALL_CLASSES[i] for i in stuff]
    if shown:
        return make_caption(shown, stuff_names)
    if stuff_names:
        return region_caption(stuff_names)
    return region_caption([ALL_CLASSES[k] for k in region_caption_classes(areas)])


def region_caption(class_names: Sequence[str]) -> str:
    """Caption of a region showing ``class_names`` (largest first; docs/miniature.md §2): things
    with an article, stuff as the scene captions say it, no counts.

    >>> region_caption(["grass", "red square"])
    'a photo of grass and a red square.'
    """
    if not class_names:
        raise ValueError("a region caption needs at least one class")
    items = []
    for name in class_names:
        if name in _STUFF_NOUN:
            items.append(_STUFF_NOUN[name])
        else:
            items.append(("an " if name[0] in "aeiou" else "a ") + name)
    text = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    return f"a photo of {text}."


def _stuff_layout(rng, height, width, names: List[str]) -> Tuple[np.ndarray, List[str]]:
    """Region map (H, W) of indices into the returned (top/left first) stuff name list."""
    if len(names) == 1:
        return np.zeros((height, width), np.int64), names
    horizontal = "sky" in names or rng.random() < 0.5
    if "sky" in names and names[0] != "sky":
        names = names[::-1]
    along, across = (width, height) if horizontal else (height, width)
    t = np.arange(along, dtype=np.float32)
    pos = rng.uniform(0.3, 0.7) * across
    amp = rng.uniform(1.5, 2.0 + 0.08 * across)
    boundary = pos + amp * np.sin(2 * np.pi * t / rng.uniform(20, 64) + rng.uniform(0, 2 * np.pi))
    boundary += 0.4 * amp * np.sin(2 * np.pi * t / rng.uniform(8, 16) + rng.uniform(0, 2 * np.pi))
    coord = np.arange(across, dtype=np.float32)
    second = coord[:, None] >= boundary[None, :]  # (across, along)
    region = second if horizontal else second.T
    return region.astype(np.int64), names


def _draw_clutter(rng, canvas: Image.Image, height: int, width: int) -> None:
    """A few small neutral marks (lines, dots, ticks) that belong to no class."""
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 7))):
        colour = np.asarray(_CLUTTER_COLOURS[int(rng.integers(len(_CLUTTER_COLOURS)))])
        colour = tuple(int(c) for c in np.clip(colour + rng.integers(-12, 13, 3), 0, 255))
        x, y = float(rng.uniform(0, width)), float(rng.uniform(0, height))
        kind = int(rng.integers(3))
        if kind == 0:  # short line
            length, a = rng.uniform(3, 9), rng.uniform(0, np.pi)
            end = (x + length * np.cos(a), y + length * np.sin(a))
            draw.line([(x, y), end], fill=colour, width=int(rng.integers(1, 3)))
        elif kind == 1:  # dot
            r = float(rng.uniform(1.0, 2.5))
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        else:  # tick / small zig-zag
            pts = [(x, y)]
            for _ in range(2):
                pts.append((pts[-1][0] + rng.uniform(-4, 4), pts[-1][1] + rng.uniform(-4, 4)))
            draw.line(pts, fill=colour, width=1)


def _erode(mask: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion (pixels outside the image count as background)."""
    p = np.pad(mask, 1)
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _mask_bbox(mask: np.ndarray) -> List[int]:
    """COCO ``[x, y, w, h]`` of a non-empty binary mask's pixel extent (w = x1 - x0 + 1)."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]


def _sample_object(rng, height, width) -> dict:
    cls = int(rng.integers(len(THING_CLASSES)))
    name = THING_CLASSES[cls]
    colour, shape = name.split(" ")
    max_size = min(OBJECT_SIZE_RANGE[1], 0.55 * min(height, width))
    size = float(rng.uniform(OBJECT_SIZE_RANGE[0], max_size))
    angle = 0.0 if shape == "circle" else float(rng.uniform(-25, 25))
    aspect = float(rng.uniform(0.92, 1.08))
    pts = shape_polygon(shape, size, angle, aspect)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    cx = float(rng.uniform(-lo[0], width - 1 - hi[0]))
    cy = float(rng.uniform(-lo[1], height - 1 - hi[1]))
    rgb = np.asarray(COLOURS[colour], np.float32) + rng.uniform(-20, 20, 3).astype(np.float32)
    return {
        "category_id": cls + 1, "name": name, "shape": shape, "colour": colour,
        "novel": name in NOVEL_CLASSES, "size": size, "angle": angle, "aspect": aspect,
        "center": (cx, cy), "polygon": pts + np.array([cx, cy]),
        "rgb": np.clip(rgb, 0, 255), "shade_dir": float(rng.uniform(0, 2 * np.pi)),
        "shade": float(rng.uniform(0.08, 0.2)),
    }


def _paint_object(rng, image: np.ndarray, obj: dict, full: np.ndarray) -> None:
    """Paint ``obj`` (jittered colour, shading gradient, pixel noise, dark outline) in place."""
    x, y, w, h = _mask_bbox(full)
    sub = full[y:y + h, x:x + w]
    yy, xx = np.mgrid[y:y + h, x:x + w].astype(np.float32)
    cx, cy = obj["center"]
    d = ((xx - cx) * np.cos(obj["shade_dir"]) + (yy - cy) * np.sin(obj["shade_dir"]))
    gain = 1.0 + obj["shade"] * d / (obj["size"] / 2.0)
    layer = obj["rgb"][None, None, :] * gain[..., None]
    layer += rng.normal(0.0, 4.0, size=layer.shape).astype(np.float32)
    outline = sub & ~_erode(sub)
    layer[outline] = obj["rgb"] * 0.45
    patch = image[y:y + h, x:x + w]
    patch[sub] = layer[sub]


def generate_scene(
    seed: int, split: str, index: int, image_size: Optional[Union[int, Tuple[int, int]]] = None
) -> dict:
    """Generate scene ``index`` of ``split`` in memory (a pure function of its arguments).

    Args:
        seed (int): world seed (non-negative).
        split (str): ``"train"``, ``"val"`` (or any name; it selects an independent stream).
        index (int): scene index within the split (0-based).
        image_size (int or (H, W) or None): fixed size; None draws height and width independently
            from 96..192 in steps of 8.

    Returns:
        dict with
          - ``image``: uint8 (H, W, 3) RGB; ``height``, ``width``;
          - ``seed``, ``split``, ``index``, ``image_id`` (= index + 1), ``file_name``
            (``"%06d.png"`` of the index);
          - ``things``: list (drawing order) of dicts ``category_id`` (1..30), ``name``, ``shape``,
            ``colour``, ``novel`` (bool), ``mask`` (bool (H, W), visible pixels), ``bbox``
            (XYWH ints of the visible mask), ``area`` (visible pixels), ``full_area``, ``size``,
            ``angle``, ``center``;
          - ``stuff``: list (top/left first) of dicts ``category_id`` (31..35), ``name``, ``mask``
            (visible, i.e. not covered by things), ``area``; only non-empty regions;
          - ``stuff_map``: int32 (H, W) stuff category id of the background under everything;
          - ``caption``: str mentioning every thing (novel included) and the background(s).
    """
    rng = scene_rng(seed, split, index)
    if image_size is None:
        lo, hi = SIDE_RANGE[0] // SIDE_STEP, SIDE_RANGE[1] // SIDE_STEP
        height, width = (int(v) * SIDE_STEP for v in rng.integers(lo, hi + 1, size=2))
    elif isinstance(image_size, int):
        height = width = int(image_size)
    else:
        height, width = (int(v) for v in image_size)

    # Background stuff.
    n_stuff = 2 if rng.random() < TWO_STUFF_PROBABILITY else 1
    names = [STUFF_CLASSES[int(i)] for i in rng.choice(len(STUFF_CLASSES), n_stuff, replace=False)]
    region, names = _stuff_layout(rng, height, width, names)
    image = np.zeros((height, width, 3), np.float32)
    stuff_map = np.zeros((height, width), np.int32)
    for k, name in enumerate(names):
        inside = region == k
        image[inside] = render_texture(name, rng, height, width)[inside]
        stuff_map[inside] = ALL_CLASSES.index(name) + 1

    canvas = Image.fromarray(np.round(image).astype(np.uint8))
    _draw_clutter(rng, canvas, height, width)
    image = np.asarray(canvas, dtype=np.float32).copy()

    # Things: sample, rasterise, resolve occlusion from the top (last drawn) down.
    n_objects = int(rng.integers(1, MAX_OBJECTS + 1))
    objects = [_sample_object(rng, height, width) for _ in range(n_objects)]
    fulls = [rasterize_polygon(o["polygon"], height, width) for o in objects]
    covered = np.zeros((height, width), bool)
    kept = []
    for k in range(len(objects) - 1, -1, -1):
        full_area = int(fulls[k].sum())
        visible = fulls[k] & ~covered
        area = int(visible.sum())
        if area < MIN_VISIBLE_AREA or area < MIN_VISIBLE_FRACTION * full_area:
            continue
        covered |= fulls[k]
        kept.append((k, visible, area, full_area))
    kept.reverse()

    things = []
    for k, visible, area, full_area in kept:
        obj = objects[k]
        _paint_object(rng, image, obj, fulls[k])
        things.append({
            "category_id": obj["category_id"], "name": obj["name"], "shape": obj["shape"],
            "colour": obj["colour"], "novel": obj["novel"], "mask": visible,
            "bbox": _mask_bbox(visible), "area": area, "full_area": full_area,
            "size": obj["size"], "angle": obj["angle"], "center": obj["center"],
        })

    stuff = []
    for name in names:
        cid = ALL_CLASSES.index(name) + 1
        mask = (stuff_map == cid) & ~covered
        if mask.any():
            stuff.append({"category_id": cid, "name": name, "mask": mask, "area": int(mask.sum())})

    return {
        "image": np.clip(np.round(image), 0, 255).astype(np.uint8),
        "height": height, "width": width, "seed": int(seed), "split": split, "index": int(index),
        "image_id": int(index) + 1, "file_name": f"{int(index):06d}.png",
        "things": things, "stuff": stuff, "stuff_map": stuff_map,
        "caption": make_caption([t["name"] for t in things], [s["name"] for s in stuff]),
    }


def panoptic_map(scene: dict, hide_novel: bool = False) -> Tuple[np.ndarray, List[dict]]:
    """COCO-panoptic id map and ``segments_info`` of a scene.

    Segment ids: stuff ``category_id * 1000``, things ``category_id * 1000 + n`` (n = 1, 2, ...
    in drawing order); 0 = unlabeled. With ``hide_novel`` (training split) novel things are left
    unlabeled, like an OV-COCO training image.

    Returns:
        (np.ndarray int32 (H, W), list of dicts ``id, category_id, iscrowd, bbox, area``).
    """
    pan = np.zeros((scene["height"], scene["width"]), np.int32)
    segments = []
    for s in scene["stuff"]:
        sid = s["category_id"] * PANOPTIC_LABEL_DIVISOR
        pan[s["mask"]] = sid
        segments.append({"id": sid, "category_id": s["category_id"], "iscrowd": 0,
                         "bbox": _mask_bbox(s["mask"]), "area": s["area"]})
    for n, t in enumerate(scene["things"], start=1):
        if hide_novel and t["novel"]:
            continue
        sid = t["category_id"] * PANOPTIC_LABEL_DIVISOR + n
        pan[t["mask"]] = sid
        segments.append({"id": sid, "category_id": t["category_id"], "iscrowd": 0,
                         "bbox": list(t["bbox"]), "area": t["area"]})
    return pan, segments


def semantic_map(scene: dict, hide_novel: bool = False) -> np.ndarray:
    """uint8 (H, W) label ``category_id - 1`` (things 0..29, stuff 30..34); 255 = unlabeled."""
    sem = np.full((scene["height"], scene["width"]), IGNORE_LABEL, np.uint8)
    for s in scene["stuff"]:
        sem[s["mask"]] = s["category_id"] - 1
    for t in scene["things"]:
        if not (hide_novel and t["novel"]):
            sem[t["mask"]] = t["category_id"] - 1
    return sem
