"""The toy CLIP's optional region crops (docs/miniature.md §1-§2): pool, captions, cache key,
a two-step pre-training."""
import json
import os

import numpy as np
import torch

from clipself.data.regions import region_class_areas
from clipself.engine import toy_clip
from clipself.engine.toy_clip import (
    build_pretraining_pool,
    region_crop_captions,
    sample_region_boxes,
    toy_clip_cache_key,
)
from clipself.synthetic import ALL_CLASSES, generate_scene, region_scene_caption, semantic_map

#: the toy CLIP settings of make demo before region crops (still make demo-cnn's) and the key
#: their cached checkpoints carry
DEMO_SETTINGS = dict(steps=800, pool_scenes=6000, seed=0, eval_scenes=300)
DEMO_KEY = "c97cebb60d"


def test_region_option_off_keeps_the_original_cache_key():
    assert toy_clip_cache_key(DEMO_SETTINGS) == DEMO_KEY
    assert toy_clip_cache_key(dict(DEMO_SETTINGS, region_crops=0, batch_regions=32)) == DEMO_KEY
    on = toy_clip_cache_key(dict(DEMO_SETTINGS, region_crops=8))
    assert on != DEMO_KEY != toy_clip_cache_key(dict(DEMO_SETTINGS, region_crops=8,
                                                     batch_regions=32)) != on


def test_crop_scale_enters_the_cache_key_only_when_changed():
    assert toy_clip_cache_key(dict(DEMO_SETTINGS, crop_scale=(1.1, 2.0))) == DEMO_KEY
    assert toy_clip_cache_key(dict(DEMO_SETTINGS, crop_scale=[1.1, 2])) == DEMO_KEY
    tight = toy_clip_cache_key(dict(DEMO_SETTINGS, crop_scale=(1.0, 2.0)))
    assert tight != DEMO_KEY and tight == toy_clip_cache_key(dict(DEMO_SETTINGS,
                                                                  crop_scale=[1, 2.0]))


def test_crop_scale_changes_only_the_object_crops():
    """The crops' draws are the same random numbers for any range: scenes, labels and region
    crops do not move; a lower bound of 1 lets some crops show the object tightly."""
    base = build_pretraining_pool(3, seed=0, size=32, workers=1, region_crops=2)
    tight = build_pretraining_pool(3, seed=0, size=32, workers=1, region_crops=2,
                                   crop_scale=(1.0, 1.0))
    assert torch.equal(base["images"], tight["images"])
    assert torch.equal(base["labels"], tight["labels"])
    assert torch.equal(base["regions"], tight["regions"])
    assert base["region_captions"] == tight["region_captions"]
    assert base["crops"].shape == tight["crops"].shape
    assert not torch.equal(base["crops"], tight["crops"])


def test_region_boxes_lie_inside_the_image():
    boxes = sample_region_boxes(160, 96, 200, np.random.default_rng(0))
    assert boxes.shape == (200, 4)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 160 + 1e-4).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= 96 + 1e-4).all()
    assert (boxes[:, 2] - boxes[:, 0] > 0).all() and (boxes[:, 3] - boxes[:, 1] > 0).all()
    assert sample_region_boxes(64, 64, 0, np.random.default_rng(0)).shape == (0, 4)


def test_object_regions_cover_the_objects():
    """With object boxes, a third of the regions are drawn around an object (scaled 0.6-2.5x,
    shifted by up to half its size): each of those overlaps the object."""
    obj = (100.0, 10.0, 20.0, 16.0)  # xywh, far from the image centre
    rng = np.random.default_rng(3)
    boxes = sample_region_boxes(160, 96, 600, rng, object_boxes=[obj])
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 160 + 1e-4).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= 96 + 1e-4).all()
    assert (boxes[:, 2] - boxes[:, 0] >= 1 - 1e-4).all()
    assert (boxes[:, 3] - boxes[:, 1] >= 1 - 1e-4).all()
    ox0, oy0, ox1, oy1 = obj[0], obj[1], obj[0] + obj[2], obj[1] + obj[3]
    iw = (torch.minimum(boxes[:, 2], torch.tensor(ox1))
          - torch.maximum(boxes[:, 0], torch.tensor(ox0))).clamp(min=0)
    ih = (torch.minimum(boxes[:, 3], torch.tensor(oy1))
          - torch.maximum(boxes[:, 1], torch.tensor(oy0))).clamp(min=0)
    covers = iw * ih / (obj[2] * obj[3])  # share of the object inside each region
    centred = ((boxes[:, 0] + boxes[:, 2]) / 2 - (ox0 + ox1) / 2).abs() <= obj[2] / 2 + 1e-3
    centred &= ((boxes[:, 1] + boxes[:, 3]) / 2 - (oy0 + oy1) / 2).abs() <= obj[3] / 2 + 1e-3
    small = (boxes[:, 2] - boxes[:, 0] <= 2.5 * obj[2] + 1e-3)
    around = centred & small & (covers > 0)
    assert 0.25 < around.float().mean() < 0.5  # about a third (some other boxes qualify too)
    without = sample_region_boxes(160, 96, 600, np.random.default_rng(3))
    wc = ((without[:, 0] + without[:, 2]) / 2 - (ox0 + ox1) / 2).abs() <= obj[2] / 2
    assert wc.float().mean() < 0.2


def test_region_captions_name_the_dominant_class_first():
    scene = generate_scene(0, "clip", 3)
    label_map = torch.from_numpy(semantic_map(scene).astype(np.int64))
    boxes = sample_region_boxes(scene["width"], scene["height"], 30, np.random.default_rng(1))
    captions = region_crop_captions(label_map, boxes)
    areas = region_class_areas(label_map, boxes, len(ALL_CLASSES))
    for caption, a in zip(captions, areas):
        top = ALL_CLASSES[int(a.argmax())]
        assert caption.startswith("a photo of ") and top.split()[-1] in caption.split(",")[0]


def test_pool_with_regions_keeps_scenes_and_object_crops():
    off = build_pretraining_pool(3, seed=0, size=32, workers=1)
    on = build_pretraining_pool(3, seed=0, size=32, workers=1, region_crops=4)
    assert off["regions"].shape == (0, 3, 32, 32) and off["region_captions"] == []
    assert on["regions"].shape == (12, 3, 32, 32) and len(on["region_captions"]) == 12
    assert torch.equal(off["images"], on["images"]) and torch.equal(off["crops"], on["crops"])
    assert off["captions"] == on["captions"]


def test_region_text_ids_share_object_crop_captions():
    crop_captions = ["a photo of a red circle.", "a red circle."]
    tokens, ids = toy_clip._region_text(
        ["a photo of grass.", "a photo of a red circle.", "a photo of grass."], crop_captions,
        lambda texts: torch.arange(len(texts))[:, None], first_id=10)
    assert ids.tolist() == [10, 0, 10]  # equal captions: equal ids; a crop caption: its id
    assert tokens[0].tolist() == tokens[2].tolist() != tokens[1].tolist()


def test_quick_pretraining_with_region_crops(tmp_path):
    lines = []
    out = tmp_path / "toy.pt"
    res = toy_clip.train_toy_clip(str(out), steps=2, batch_scenes=4, batch_crops=4,
                                  pool_scenes=4, warmup=1, eval_scenes=2, region_crops=3,
                                  batch_regions=6, log=lines.append)
    assert os.path.exists(out) and np.isfinite(res["final_loss"])
    assert any("12 region crops" in line for line in lines)
    json.dumps(res)


def test_region_captions_describe_the_region_as_a_scene():
    """docs/miniature.md §2: each region's caption is the world's scene caption of what it shows,
    computed here from the objects' masks and the semantic map directly."""
    scene = generate_scene(0, "clip", 5)
    label_map = torch.from_numpy(semantic_map(scene).astype(np.int64))
    t = max(scene["things"], key=lambda t: t["area"])
    x, y, w, h = (int(v) for v in t["bbox"])
    boxes = torch.tensor([[x - 4, y - 4, x + w + 4, y + h + 4],  # the object with a margin
                          [x, y, x + w // 3, y + h // 3],  # a corner of its box
                          [0, 0, scene["width"], scene["height"]]], dtype=torch.float32)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, scene["width"])
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, scene["height"])
    captions = region_crop_captions(label_map, boxes, scene["things"])
    names = [o["name"] for o in scene["things"]]
    visible = [int(np.asarray(o["mask"]).sum()) for o in scene["things"]]
    for caption, box in zip(captions, boxes.long().tolist()):
        x0, y0, x1, y1 = box
        inside = [int(np.asarray(o["mask"])[y0:y1, x0:x1].sum()) for o in scene["things"]]
        areas = np.bincount(label_map[y0:y1, x0:x1].flatten().numpy(), minlength=256)
        assert caption == region_scene_caption(names, inside, visible,
                                               areas[:len(ALL_CLASSES)].tolist())
    article = "an" if t["name"][0] in "aeiou" else "a"
    assert f"{article} {t['name']}" in captions[0]  # the whole object is named
    # without the objects, only the semantic map speaks: stuff, or the largest classes
    areas = region_class_areas(label_map, boxes[:1], len(ALL_CLASSES))[0].tolist()
    assert region_crop_captions(label_map, boxes[:1]) == [region_scene_caption([], [], [], areas)]
