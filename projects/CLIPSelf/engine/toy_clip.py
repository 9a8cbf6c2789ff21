"""The toy CLIP: an open_clip CLIP trained contrastively from scratch on the synthetic world.

The architecture is an open_clip model config shipped with the package (``ToyCLIP-ViT-P8``: a
ViT with patch 8 at 64 px, width 128, 4 layers; a 3-layer text transformer with open_clip's
tokenizer, context 32). After training it is saved as a plain open_clip state dict and loaded like
real CLIP weights: ``open_clip.create_model("ToyCLIP-ViT-P8", pretrained=path)`` or
``CLIPViT(model_name="ToyCLIP-ViT-P8", pretrained=path)``.

``ToyCLIP-RN`` is its CNN twin for the paper's CNN-vs-ViT comparison (the paper's section "CLIP
Image and Dense Representation"; docs/cnn_vs_vit.md): an open_clip ModifiedResNet (stages
[2, 2, 2, 2], width 11, attention pool; 0.84 M visual parameters like the ViT's 0.84 M) with the
same text tower, trained by the same recipe (``train_toy_clip(..., model_name="ToyCLIP-RN")``:
same pool, steps, batches, optimiser and schedule).

Training pairs are generated in memory from scenes of a dedicated split (``"clip"``), disjoint
from the world's train/val images: whole scenes with their captions, and object crops (box
enlarged 1.1-2x, jittered) with "a photo of a {class}."-style captions. Novel classes are
included: like web-scale CLIP, the toy CLIP has seen every concept; only the detectors are
trained on base classes.

With ``region_crops`` > 0 (``tools/miniature_paper.py --region-crops N``; :data:`REGION_RECIPE`;
0, the default and ``make demo``'s, is the original recipe) the pool also holds the kinds of
regions CLIPSelf asks the teacher about (docs/miniature.md §1-§2): per scene, ``region_crops``
crops that are each, with equal probability, a cell of a random patch grid (the 24 grids of the
patches mode), a random box (sides 10-100% of the image's, anywhere inside it) or a box around
an object (scaled 0.6-2.5x, shifted: cut objects and objects in context), cut as they are (no
enlargement). Each is captioned as the world captions a scene
(:func:`~clipself.synthetic.region_scene_caption`): the objects it shows, counted, on the stuff
around them, e.g. "a photo of a red square on grass."; a region without an object by its
stuff, "a photo of grass and the sky."
Each step adds ``batch_regions`` of them to the batch.
"""
import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image

from ..checkpoint import save_checkpoint_file
from ..data.clip_transforms import crop_letterboxed, letterbox
from ..data.regions import grid_cells, grid_choices, region_class_areas
from ..evaluation.region_recognition import mean_class_accuracy
from ..modeling.backbone.clip_vit import register_project_model_configs
from ..synthetic.world import (
    ALL_CLASSES,
    THING_CLASSES,
    generate_scene,
    region_scene_caption,
    semantic_map,
)
from ..utils.atomic import atomic_path

__all__ = [
    "TOY_CLIP_NAME",
    "TOY_CLIP_RN_NAME",
    "CROP_SCALE",
    "register_toy_clip_configs",
    "toy_clip_cache_key",
    "cached_toy_clip",
    "pretraining_input_size",
    "build_pretraining_pool",
    "sample_region_boxes",
    "region_crop_captions",
    "train_toy_clip",
    "object_crops",
    "zero_shot_crop_accuracy",
    "encode_crops",
    "class_text_embeddings",
    "CROP_TEMPLATES",
]

logger = logging.getLogger(__name__)

TOY_CLIP_NAME = "ToyCLIP-ViT-P8"
#: the CNN toy CLIP (ModifiedResNet), trained like ``TOY_CLIP_NAME``
TOY_CLIP_RN_NAME = "ToyCLIP-RN"
#: Captions of object crops during pre-training (one drawn at random per crop).
CROP_TEMPLATES = (
    "a photo of a {}.",
    "a {}.",
    "a picture of a {}.",
    "a close-up photo of a {}.",
    "a cropped photo of a {}.",
    "there is a {} in the scene.",
)
CLIP_MEAN = torch.tensor(OPENAI_DATASET_MEAN).view(3, 1, 1) * 255
CLIP_STD = torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1) * 255


def register_toy_clip_configs() -> None:
    """Make the project's open_clip model configs (``ToyCLIP-*``) known to open_clip."""
    register_project_model_configs()


def object_crops(
    image: Image.Image,
    boxes_xywh: Sequence[Sequence[float]],
    size: int,
    rng: Optional[np.random.Generator] = None,
    scale: Tuple[float, float] = (1.5, 1.5),
    jitter: float = 0.0,
) -> torch.Tensor:
    """Letterboxed crops of boxes enlarged by a factor drawn from ``scale`` and shifted by up to
    ``jitter`` x box size.

    Returns:
        Tensor (R, 3, size, size) uint8.
    """
    rng = rng or np.random.default_rng(0)
    w_img, h_img = image.size
    crops = []
    for x, y, w, h in boxes_xywh:
        s = rng.uniform(*scale)
        cx = x + w / 2 + rng.uniform(-jitter, jitter) * w
        cy = y + h / 2 + rng.uniform(-jitter, jitter) * h
        half_w, half_h = w * s / 2, h * s / 2
        x0, y0 = max(0, int(cx - half_w)), max(0, int(cy - half_h))
        x1, y1 = min(w_img, int(math.ceil(cx + half_w))), min(h_img, int(math.ceil(cy + half_h)))
        crops.append(letterbox(image.crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))), size))
    if not crops:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return torch.stack(crops)


#: the object crops' enlargement range of the original recipe (boxes x1.1-2)
CROP_SCALE = (1.1, 2.0)
#: the region crops of ``--region-crops`` runs (docs/miniature.md §1): per pool scene and per step
REGION_RECIPE = {"region_crops": 4, "batch_regions": 32}
#: version of the region sampler and caption rule, part of the cache key when region crops are
#: on (2: boxes around objects and salient objects named alone; 3: captions written as the
#: world's scene captions; docs/miniature.md §1-§2)
REGION_VERSION = 3
#: side range of the random boxes among the region crops, as a share of the image's side
REGION_BOX_SIDE = (0.1, 1.0)
#: object-anchored regions: scale of the object's box (below 1 cuts the object) and the shift of
#: its centre, as a share of the box's sides
REGION_OBJECT_SCALE = (0.6, 2.5)
REGION_OBJECT_SHIFT = 0.5


def sample_region_boxes(
    width: int,
    height: int,
    count: int,
    rng: np.random.Generator,
    max_split: int = 6,
    object_boxes: Optional[Sequence[Sequence[float]]] = None,
) -> torch.Tensor:
    """``count`` regions of a ``width x height`` image like those CLIPSelf distils
    (docs/miniature.md §1), each of one kind drawn with equal probability:

    - a random cell of a random grid of :func:`~clipself.data.regions.grid_choices`;
    - a random box with sides drawn uniformly in :data:`REGION_BOX_SIDE` x the image's sides,
      placed uniformly inside the image;
    - (when ``object_boxes`` is not empty) a box around a random object: its box scaled by
      :data:`REGION_OBJECT_SCALE` (independently per side) and shifted by up to
      :data:`REGION_OBJECT_SHIFT` x its sides, clipped to the image: cut objects, objects with
      their neighbours and background, as a grid cell over an object shows them.

    Args:
        object_boxes: (O, 4) xywh boxes of the scene's objects, or None.
    Returns:
        Tensor (count, 4) float xyxy.
    """
    choices = grid_choices(max_split)
    objects = [tuple(map(float, b)) for b in (object_boxes or [])]
    kinds = 3 if objects else 2
    boxes = []
    for _ in range(count):
        kind = int(rng.integers(kinds))
        if kind == 0:
            rows, cols = choices[int(rng.integers(len(choices)))]
            boxes.append(grid_cells(width, height, rows, cols)[int(rng.integers(rows * cols))])
            continue
        if kind == 1:
            w = rng.uniform(*REGION_BOX_SIDE) * width
            h = rng.uniform(*REGION_BOX_SIDE) * height
            x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
            boxes.append(torch.tensor([x0, y0, x0 + w, y0 + h], dtype=torch.float32))
            continue
        x, y, bw, bh = objects[int(rng.integers(len(objects)))]
        w = max(1.0, bw * rng.uniform(*REGION_OBJECT_SCALE))
        h = max(1.0, bh * rng.uniform(*REGION_OBJECT_SCALE))
        cx = x + bw / 2 + rng.uniform(-REGION_OBJECT_SHIFT, REGION_OBJECT_SHIFT) * bw
        cy = y + bh / 2 + rng.uniform(-REGION_OBJECT_SHIFT, REGION_OBJECT_SHIFT) * bh
        x0, x1 = np.clip([cx - w / 2, cx + w / 2], 0, width)
        y0, y1 = np.clip([cy - h / 2, cy + h / 2], 0, height)
        x1, y1 = max(x1, min(width, x0 + 1)), max(y1, min(height, y0 + 1))
        x0, y0 = min(x0, x1 - 1), min(y0, y1 - 1)
        boxes.append(torch.tensor([x0, y0, x1, y1], dtype=torch.float32))
    return torch.stack(boxes) if boxes else torch.zeros(0, 4)


def region_crop_captions(
    label_map: torch.Tensor, boxes: torch.Tensor, things: Optional[Sequence[Mapping]] = None
) -> list:
    """The caption of each region (docs/miniature.md §2), written as the world captions a scene
    (:func:`~clipself.synthetic.region_scene_caption`): the objects it shows, counted, on the
    stuff around them; a region without such an object is captioned by its stuff.

    Args:
        label_map (Tensor): (H, W) indices into ``ALL_CLASSES`` (the scene's semantic map).
        boxes (Tensor): (R, 4) xyxy regions.
        things (list of dict or None): the scene's objects (``name``, ``mask`` bool (H, W) of
            the visible pixels), as :func:`~clipself.synthetic.generate_scene` gives them; None:
            no object is named (the stuff, or the largest classes, by area).
    Returns:
        list[str] (R).
    """
    areas = region_class_areas(label_map, boxes, len(ALL_CLASSES)).tolist()  # (R, K)
    things = list(things or [])
    names = [t["name"] for t in things]
    if things:
        instances = torch.full(label_map.shape, -1, dtype=torch.long)  # (H, W) object index
        for k, t in enumerate(things):
            instances[torch.from_numpy(np.asarray(t["mask"], dtype=bool))] = k
        inside = region_class_areas(instances, boxes, len(things)).tolist()  # (R, O)
        visible = [int(np.asarray(t["mask"]).sum()) for t in things]
    else:
        inside, visible = [[] for _ in range(len(boxes))], []
    return [region_scene_caption(names, row, visible, a) for row, a in zip(inside, areas)]


def _pool_chunk(args) -> Dict[str, list]:
    seed, start, stop, size, region_crops, crop_scale = args
    images, captions, crops, labels = [], [], [], []
    regions, region_captions = [], []
    for i in range(start, stop):
        scene = generate_scene(seed, "clip", i)
        rng = np.random.default_rng([seed, i, 7])
        pil = Image.fromarray(scene["image"])
        images.append(letterbox(pil, size))
        captions.append(scene["caption"])
        boxes = [t["bbox"] for t in scene["things"]]
        crops.append(object_crops(pil, boxes, size, rng, scale=crop_scale, jitter=0.1))
        labels.extend(THING_CLASSES.index(t["name"]) for t in scene["things"])
        if region_crops:
            # an own stream, so that the scenes and object crops do not depend on the option
            region_rng = np.random.default_rng([seed, i, 11])
            cells = sample_region_boxes(scene["width"], scene["height"], region_crops,
                                        region_rng, object_boxes=boxes)
            label_map = torch.from_numpy(semantic_map(scene).astype(np.int64))
            regions.append(crop_letterboxed(pil, cells, size))
            region_captions.extend(region_crop_captions(label_map, cells, scene["things"]))
    return {"images": images, "captions": captions, "crops": crops, "labels": labels,
            "regions": regions, "region_captions": region_captions}


def build_pretraining_pool(
    num_scenes: int,
    *,
    seed: int = 0,
    size: int = 64,
    workers: int = 2,
    region_crops: int = 0,
    crop_scale: Tuple[float, float] = CROP_SCALE,
) -> Dict[str, object]:
    """Scenes, object crops and (with ``region_crops``) captioned region crops of the ``"clip"``
    split, in memory.

    Args:
        region_crops (int): region crops per scene (docs/miniature.md §1-§2); 0 = none (default).
        crop_scale (tuple): range of the object crops' enlargement factor (one uniform draw per
            crop; the same random numbers for any range).
    Returns:
        dict: ``images`` uint8 (N, 3, size, size), ``captions`` list[str] (N), ``crops`` uint8
        (M, 3, size, size), ``labels`` int64 (M,) thing-class indices, ``regions`` uint8
        (N * region_crops, 3, size, size) and ``region_captions`` list[str] (N * region_crops).
    """
    chunk = max(1, num_scenes // (workers * 4))
    jobs = [(seed, s, min(num_scenes, s + chunk), size, region_crops, tuple(crop_scale))
            for s in range(0, num_scenes, chunk)]
    if workers > 1:
        # spawn, not fork: forking after torch started its thread pool can deadlock
        with mp.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_pool_chunk, jobs)
    else:
        parts = [_pool_chunk(j) for j in jobs]
    return {
        "images": torch.stack([im for p in parts for im in p["images"]]),
        "captions": [c for p in parts for c in p["captions"]],
        "crops": torch.cat([c for p in parts for c in p["crops"]]),
        "labels": torch.tensor([lab for p in parts for lab in p["labels"]], dtype=torch.long),
        "regions": torch.cat([r for p in parts for r in p["regions"]]
                             or [torch.zeros(0, 3, size, size, dtype=torch.uint8)]),
        "region_captions": [c for p in parts for c in p["region_captions"]],
    }


def _normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    return (images_uint8.float() - CLIP_MEAN) / CLIP_STD


def clip_contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    text_ids: torch.Tensor,
) -> torch.Tensor:
    """Symmetric InfoNCE where pairs with identical captions are all positives.

    Args:
        image_features, text_features (Tensor): (N, D) L2-normalised.
        logit_scale (Tensor): scalar (already exponentiated).
        text_ids (Tensor): (N,) caption identity (equal ids = equal captions).
    """
    logits = logit_scale * image_features @ text_features.T  # (N, N)
    positives = (text_ids[:, None] == text_ids[None, :]).float()  # (N, N)
    targets = positives / positives.sum(dim=1, keepdim=True)
    loss_i = torch.sum(-targets * F.log_softmax(logits, dim=1), dim=1).mean()
    loss_t = torch.sum(-targets * F.log_softmax(logits.T, dim=1), dim=1).mean()
    return (loss_i + loss_t) / 2


@torch.no_grad()
def class_text_embeddings(model, tokenizer, class_names: Sequence[str]) -> torch.Tensor:
    """(K, D) normalised embeddings of "a photo of a {name}." (the evaluation prompt)."""
    tokens = tokenizer([f"a photo of a {c}." for c in class_names])
    return F.normalize(model.encode_text(tokens), dim=-1)


@torch.no_grad()
def encode_crops(model, crops: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """(R, D) normalised image embeddings of letterboxed uint8 crops (R, 3, S, S)."""
    if len(crops) == 0:
        return torch.zeros(0, model.text_projection.shape[1])
    return torch.cat([F.normalize(model.encode_image(_normalize(c)), dim=-1)
                      for c in crops.split(batch)])


@torch.no_grad()
def zero_shot_crop_accuracy(
    model, tokenizer, crops: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> float:
    """Mean per-class top-1 accuracy (%) of letterboxed crops against the thing classes."""
    model.eval()
    text = class_text_embeddings(model, tokenizer, THING_CLASSES[:num_classes])
    top = (encode_crops(model, crops) @ text.T).topk(5, dim=1).indices
    return mean_class_accuracy(top, labels, 1, num_classes)


def val_crops(seed: int, num_scenes: int, size: int = 64) -> Tuple[torch.Tensor, torch.Tensor]:
    """Crops (boxes x1.5, letterboxed) of every object of the world's first validation scenes."""
    crops, labels = [], []
    for i in range(num_scenes):
        scene = generate_scene(seed, "val", i)
        pil = Image.fromarray(scene["image"])
        crops.append(object_crops(pil, [t["bbox"] for t in scene["things"]], size))
        labels.extend(THING_CLASSES.index(t["name"]) for t in scene["things"])
    return torch.cat(crops), torch.tensor(labels, dtype=torch.long)


def pretraining_input_size(visual) -> int:
    """The pre-training input side of an open_clip visual tower (``image_size`` is an int for
    ModifiedResNet, a pair for VisionTransformer)."""
    size = getattr(visual, "image_size", 64)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def train_toy_clip(
    output_path: str,
    *,
    model_name: str = TOY_CLIP_NAME,
    steps: int = 600,
    batch_scenes: int = 32,
    batch_crops: int = 160,
    pool_scenes: int = 6000,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    warmup: int = 50,
    seed: int = 0,
    eval_scenes: int = 300,
    region_crops: int = 0,
    batch_regions: int = 64,
    crop_scale: Sequence[float] = CROP_SCALE,
    log=print,
) -> Dict[str, float]:
    """Train the toy CLIP and save its open_clip state dict to ``output_path``.

    Args:
        output_path (str): the checkpoint file.
        model_name (str): the project's open_clip config (``TOY_CLIP_NAME``, the ViT, or
            ``TOY_CLIP_RN_NAME``, the CNN); every other setting is the recipe, the same for any.
        region_crops (int): captioned region crops (grid cells and random boxes) per pool scene
            (docs/miniature.md §1-§2); 0 (default) = the original recipe, unchanged.
        batch_regions (int): region crops per step when ``region_crops`` > 0.
        crop_scale (pair): range of the object crops' enlargement (default x1.1-2; docs/miniature.md
            §1).
    Returns:
        dict: ``zero_shot_top1`` (%, val crops, 30 classes), ``final_loss``, ``seconds``.
    """
    register_toy_clip_configs()
    torch.manual_seed(seed)
    t_start = time.time()
    model = open_clip.create_model(model_name, pretrained=None)
    tokenizer = open_clip.get_tokenizer(model_name)
    size = pretraining_input_size(model.visual)

    log(f"toy CLIP ({model_name}): generating {pool_scenes} pre-training scenes")
    pool = build_pretraining_pool(pool_scenes, seed=seed, size=size, region_crops=region_crops,
                                  crop_scale=tuple(crop_scale))
    templates = list(CROP_TEMPLATES)
    scene_tokens = tokenizer(pool["captions"])  # (N, ctx)
    crop_captions = [t.format(c) for c in THING_CLASSES for t in templates]
    crop_caption_tokens = tokenizer(crop_captions).view(len(THING_CLASSES), len(templates), -1)
    use_regions = region_crops > 0 and batch_regions > 0
    if use_regions:
        region_tokens, region_text_ids = _region_text(
            pool["region_captions"], crop_captions, tokenizer,
            first_id=len(crop_captions) + 1 + len(pool["images"]))
    log(f"toy CLIP: {len(pool['images'])} scenes, {len(pool['crops'])} crops, "
        f"{len(pool['regions'])} region crops in {time.time() - t_start:.1f} s")

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "logit_scale" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "logit_scale" in n]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0}],
        lr=lr, betas=(0.9, 0.98), eps=1e-6,
    )
    g = torch.Generator().manual_seed(seed)
    n_scenes, n_crops = len(pool["images"]), len(pool["crops"])
    model.train()
    t_train = time.time()
    loss_ema = None
    for step in range(steps):
        lr_now = lr * (step + 1) / warmup if step < warmup else (
            0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
        )
        for group in opt.param_groups:
            group["lr"] = lr_now
        si = torch.randint(n_scenes, (batch_scenes,), generator=g)
        ci = torch.randint(n_crops, (batch_crops,), generator=g)
        ti = torch.randint(len(templates), (batch_crops,), generator=g)
        crop_labels = pool["labels"][ci]
        images = _normalize(torch.cat([pool["images"][si], pool["crops"][ci]]))
        tokens = torch.cat([scene_tokens[si], crop_caption_tokens[crop_labels, ti]])
        # identical captions are positives of each other (crops of one class + template)
        text_ids = torch.cat([si + len(THING_CLASSES) * len(templates) + 1,
                              crop_labels * len(templates) + ti])
        if use_regions:  # drawn after the others: without regions the batches are unchanged
            ri = torch.randint(len(pool["regions"]), (batch_regions,), generator=g)
            images = torch.cat([images, _normalize(pool["regions"][ri])])
            tokens = torch.cat([tokens, region_tokens[ri]])
            text_ids = torch.cat([text_ids, region_text_ids[ri]])
        image_features = model.encode_image(images, normalize=True)
        text_features = model.encode_text(tokens, normalize=True)
        loss = clip_contrastive_loss(
            image_features, text_features, model.logit_scale.exp(), text_ids
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        value = loss.item()
        loss_ema = value if loss_ema is None else 0.95 * loss_ema + 0.05 * value
        if (step + 1) % 50 == 0 or step + 1 == steps:
            per_step = (time.time() - t_train) / (step + 1)
            eta = per_step * (steps - step - 1)
            log(f"toy CLIP: step {step + 1}/{steps} loss {loss_ema:.3f} "
                f"lr {lr_now:.2e} ({per_step:.2f} s/step, ETA {eta:.0f} s)")
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    save_checkpoint_file(model.state_dict(), output_path)
    crops, labels = val_crops(seed, eval_scenes, size)
    acc = zero_shot_crop_accuracy(model, tokenizer, crops, labels, len(THING_CLASSES))
    log(f"toy CLIP: zero-shot top-1 on {len(labels)} val crops (x1.5 boxes): {acc:.1f}%")
    return {"zero_shot_top1": acc, "final_loss": loss_ema, "seconds": time.time() - t_start}


def _region_text(
    captions: Sequence[str], crop_captions: Sequence[str], tokenizer, first_id: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Tokens (R, ctx) and caption ids (R,) of the region crops: a caption equal to an object
    crop's ("a photo of a red square.") gets that crop caption's id (index into
    ``crop_captions``, so they are positives of each other), any other distinct caption its own
    id from ``first_id`` on."""
    crop_ids = {c: i for i, c in enumerate(crop_captions)}
    distinct = sorted(set(captions))
    own = {c: first_id + i for i, c in enumerate(c for c in distinct if c not in crop_ids)}
    ids = torch.tensor([crop_ids[c] if c in crop_ids else own[c] for c in captions],
                       dtype=torch.long)
    position = {c: i for i, c in enumerate(distinct)}
    index = torch.tensor([position[c] for c in captions], dtype=torch.long)
    return tokenizer(distinct)[index], ids


def toy_clip_cache_key(settings: Mapping[str, Any], model_name: str = TOY_CLIP_NAME) -> str:
    """The cache key of a toy CLIP: a hash of its training settings, plus its model config
    unless it is the default ViT (so the key of the ViT checkpoint ``make demo`` caches does not
    change). ``region_crops=0`` is the original recipe and leaves the key as without it (so does
    ``batch_regions`` then, which has no effect); with region crops the key also holds
    :data:`REGION_VERSION`.

    Args:
        settings (dict): the keyword arguments of :func:`train_toy_clip` that define the run.
        model_name (str): the model config.
    Returns:
        str: 10 hex digits.
    """
    key = dict(settings)
    if tuple(key.get("crop_scale", CROP_SCALE)) == CROP_SCALE:
        key.pop("crop_scale", None)  # the original recipe's crops keep the key they had
    else:
        key["crop_scale"] = [float(v) for v in key["crop_scale"]]
    if key.get("region_crops", 0) == 0:
        key.pop("region_crops", None)
        key.pop("batch_regions", None)
    else:  # a change of the region sampler or caption rule retrains the toy CLIP
        key["region_version"] = REGION_VERSION
    if model_name != TOY_CLIP_NAME:
        key["model_name"] = model_name
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def cached_toy_clip(
    folder: str,
    settings: Mapping[str, Any],
    *,
    model_name: str = TOY_CLIP_NAME,
    log: Callable[[str], None] = print,
) -> Dict[str, Any]:
    """Train a toy CLIP into ``folder/toy_clip.pt`` once per settings; later calls reuse it.

    ``folder/toy_clip.json`` records the key, the settings and the training results; a
    checkpoint whose key differs is trained again.

    Args:
        folder (str): where the checkpoint and its JSON live.
        settings (dict): keyword arguments of :func:`train_toy_clip` (steps, pool_scenes, seed,
            eval_scenes, ...).
        model_name (str): the model config (``TOY_CLIP_NAME`` or ``TOY_CLIP_RN_NAME``).
        log (callable): progress lines.
    Returns:
        dict: ``checkpoint`` (path), ``key``, ``settings``, ``zero_shot_top1``, ``final_loss``,
        ``seconds`` (of the training run, also when reused); ``model_name`` for a non-default
        model.
    """
    key = toy_clip_cache_key(settings, model_name)
    ckpt = os.path.join(folder, "toy_clip.pt")
    info_path = os.path.join(folder, "toy_clip.json")
    if os.path.exists(ckpt) and os.path.exists(info_path):
        with open(info_path) as f:
            info = json.load(f)
        if info.get("key") == key:
            log(f"toy CLIP: reusing {ckpt} (zero-shot top-1 {info['zero_shot_top1']:.1f}%)")
            return {"checkpoint": ckpt, **info}
    result = train_toy_clip(ckpt, model_name=model_name, log=log, **settings)
    info = {"key": key, "settings": dict(settings), **result}
    if model_name != TOY_CLIP_NAME:
        info["model_name"] = model_name
    with atomic_path(info_path) as tmp, open(tmp, "w") as f:
        json.dump(info, f, indent=2)
    return {"checkpoint": ckpt, **info}
