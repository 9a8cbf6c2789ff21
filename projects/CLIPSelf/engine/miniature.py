"""The miniature paper's sizes: world, toy CLIP and schedules, shared by ``make demo``
(tools/miniature_paper.py), ``make demo-seeds``, ``make demo-cnn`` and the image-level sweep, so
that each reuses the world and toy CLIP the others cached (docs/miniature.md).

``SIZES["full"]`` is ``make demo``; ``SIZES["quick"]`` the integration tests' tiny run. The
patches and proposals distillations share one schedule (docs/miniature.md §3: patch
distillation is measured with the images and steps proposals get).
"""
from typing import Any, Dict, Mapping, Tuple

from .toy_clip import REGION_RECIPE

__all__ = ["SIZES", "DISTILL_SOURCES", "distill_schedule", "toy_clip_settings", "with_region_crops"]

#: The CLIPSelf schedule of both region sources of the paper: 1800 iterations x 8 images. On
#: world seed 0 (128 px, the toy CLIP of the original recipe) proposals reached dense box top-1
#: 36.5 / 42.2 / 48.8 / 51.8 after 300 x 16 / 600 x 16 / 1200 x 16 / 1800 x 8 images, and patches
#: 20.8 after 300 x 16 against 26.5 after 1800 x 8 (docs/miniature.md §3).
DISTILL_ITERS, DISTILL_BATCH = 1800, 8

SIZES: Dict[str, Dict[str, Any]] = {
    "full": dict(
        num_train=2000, num_val=300,  # the world
        clip_steps=800, clip_pool=6000, clip_eval=300, clip_region_crops=0, clip_batch_regions=0,
        patches_iters=DISTILL_ITERS, patches_batch=DISTILL_BATCH,
        proposals_iters=DISTILL_ITERS, proposals_batch=DISTILL_BATCH,
        mixed_iters=300, mixed_batch=16,  # not in the paper: a shorter run (make demo's budget)
        eval_batch=16, eval_images=300, fvit_iters=300, fvit_batch=8,
    ),
    "quick": dict(
        num_train=24, num_val=8,
        clip_steps=10, clip_pool=64, clip_eval=8, clip_region_crops=0, clip_batch_regions=0,
        patches_iters=16, patches_batch=4, proposals_iters=16, proposals_batch=4,
        mixed_iters=16, mixed_batch=4, eval_batch=4, eval_images=8, fvit_iters=6, fvit_batch=2,
    ),
}
#: region sources of the CLIPSelf runs
DISTILL_SOURCES = ("patches", "proposals", "mixed")


def distill_schedule(size: Mapping[str, Any], source: str) -> Tuple[int, int]:
    """(iterations, images per iteration) of the CLIPSelf run on ``source`` regions."""
    if source not in DISTILL_SOURCES:
        raise ValueError(f"source must be one of {DISTILL_SOURCES}, got {source!r}")
    return int(size[f"{source}_iters"]), int(size[f"{source}_batch"])


def toy_clip_settings(size: Mapping[str, Any], seed: int) -> Dict[str, Any]:
    """The keyword arguments of :func:`~clipself.engine.toy_clip.cached_toy_clip` (and its cache
    key) for the toy CLIP of ``size`` on world ``seed``."""
    return dict(steps=size["clip_steps"], pool_scenes=size["clip_pool"], seed=seed,
                eval_scenes=size["clip_eval"], region_crops=size["clip_region_crops"],
                batch_regions=size["clip_batch_regions"])


def with_region_crops(size: Mapping[str, Any], region_crops: int) -> Dict[str, Any]:
    """``size`` with the toy CLIP pre-trained on ``region_crops`` captioned region crops per pool
    scene (docs/miniature.md §1-§2; :data:`~clipself.engine.toy_clip.REGION_RECIPE`'s crops per
    step); 0 = the original recipe."""
    out = dict(size)
    out["clip_region_crops"] = int(region_crops)
    out["clip_batch_regions"] = REGION_RECIPE["batch_regions"] if region_crops else 0
    return out
