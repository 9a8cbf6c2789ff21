"""The pure parts of ``make demo-cnn`` (clipself.engine.cnn_vs_vit) and the toy-CLIP cache."""
import hashlib
import json
import math

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from clipself.engine import cnn_vs_vit as cv
from clipself.engine import toy_clip
from clipself.engine.toy_clip import (
    TOY_CLIP_NAME,
    TOY_CLIP_RN_NAME,
    cached_toy_clip,
    pretraining_input_size,
    register_toy_clip_configs,
    toy_clip_cache_key,
)
from clipself.modeling import CLIPConvTower, CLIPTower

SETTINGS = dict(steps=800, pool_scenes=6000, seed=0, eval_scenes=300)


def test_dense_grid():
    assert cv.dense_grid(128, 8) == 16 and cv.dense_grid(512, 32) == 16
    for size, stride in ((100, 32), (0, 8), (64, 0)):
        with pytest.raises(ValueError, match="multiple of the tower's stride"):
            cv.dense_grid(size, stride)


def test_eval_runs_compare_equal_inputs_and_equal_grids():
    grids = {run: cv.dense_grid(side, cv.TOWERS[tower][3])
             for run, (tower, side) in cv.EVAL_RUNS.items()}
    assert cv.EVAL_RUNS["vit_128"][1] == cv.EVAL_RUNS["rn_128"][1]
    assert grids["vit_64"] == grids["rn_256"] == 8 and grids["vit_128"] == grids["rn_512"] == 16


def test_toy_vit_cache_key_is_unchanged():
    """The key ``make demo`` gave its toy ViT before the model became an argument: a cached
    ``output/demo/toy_clip`` stays valid; the CNN gets another key."""
    old = hashlib.sha1(json.dumps(SETTINGS, sort_keys=True).encode()).hexdigest()[:10]
    assert toy_clip_cache_key(SETTINGS) == toy_clip_cache_key(SETTINGS, TOY_CLIP_NAME) == old
    assert toy_clip_cache_key(SETTINGS, TOY_CLIP_RN_NAME) != old
    assert toy_clip_cache_key(dict(SETTINGS, steps=10)) != old


def _fake_toy_clip(folder, settings, model_name=TOY_CLIP_NAME):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy_clip.pt").write_bytes(b"weights")
    info = {"key": toy_clip_cache_key(settings, model_name), "settings": settings,
            "zero_shot_top1": 50.0, "final_loss": 1.0, "seconds": 2.0}
    (folder / "toy_clip.json").write_text(json.dumps(info))


def test_cached_toy_clip_reuses_matching_checkpoints_only(tmp_path, monkeypatch):
    calls = []

    def fake_train(path, **kwargs):
        calls.append((path, kwargs["model_name"], kwargs["steps"]))
        return {"zero_shot_top1": 1.0, "final_loss": 2.0, "seconds": 3.0}

    monkeypatch.setattr(toy_clip, "train_toy_clip", fake_train)
    _fake_toy_clip(tmp_path / "vit", SETTINGS)
    info = cached_toy_clip(str(tmp_path / "vit"), SETTINGS, log=lambda m: None)
    assert calls == [] and info["zero_shot_top1"] == 50.0
    # same settings, other model: trained, and its key / model recorded
    info = cached_toy_clip(str(tmp_path / "vit"), SETTINGS, model_name=TOY_CLIP_RN_NAME,
                           log=lambda m: None)
    assert calls == [(str(tmp_path / "vit" / "toy_clip.pt"), TOY_CLIP_RN_NAME, 800)]
    saved = json.loads((tmp_path / "vit" / "toy_clip.json").read_text())
    assert saved["model_name"] == TOY_CLIP_RN_NAME
    assert saved["key"] == toy_clip_cache_key(SETTINGS, TOY_CLIP_RN_NAME) == info["key"]


def test_find_toy_clip_and_find_world(tmp_path):
    _fake_toy_clip(tmp_path / "demo", SETTINGS)
    _fake_toy_clip(tmp_path / "own", SETTINGS, TOY_CLIP_RN_NAME)
    folders = [str(tmp_path / "demo"), str(tmp_path / "own"), str(tmp_path / "missing")]
    assert cv.find_toy_clip(folders, SETTINGS, TOY_CLIP_NAME) == folders[0]
    assert cv.find_toy_clip(folders, SETTINGS, TOY_CLIP_RN_NAME) == folders[1]
    assert cv.find_toy_clip(folders, dict(SETTINGS, steps=1), TOY_CLIP_NAME) is None

    for name, n in (("a", 10), ("b", 20)):
        (tmp_path / name / "synthetic").mkdir(parents=True)
        (tmp_path / name / "synthetic" / "meta.json").write_text(
            json.dumps({"seed": 0, "num_train": n, "num_val": 5}))
    roots = [str(tmp_path / "none"), str(tmp_path / "a"), str(tmp_path / "b")]
    assert cv.find_world(roots, seed=0, num_train=20, num_val=5) == roots[2]
    assert cv.find_world(roots, seed=1, num_train=20, num_val=5) is None


def test_region_eval_args_set_the_mask_grid():
    args = cv.region_eval_args("c.py", "/w/rn.pt", 512, 32, "/o/rn_512", "/o/text")
    assert args[:3] == ["--eval-only", "--config-file", "c.py"]
    assert "dataloader.test.mapper.mask_size=16" in args
    assert "dataloader.test.mapper.image_size=512" in args
    assert 'model.student.pretrained="/w/rn.pt"' in args
    with pytest.raises(ValueError):
        cv.region_eval_args("c.py", "w.pt", 100, 32, "o", "t")


def test_comparison_rows():
    res = {k: 10.0 for k in cv.REGION_KEYS}
    region = {"vit_128": dict(res, boxes_top1=5.0, crops_top1=40.0),
              "rn_512": dict(res, boxes_top1=30.0, crops_top1=20.0, thing_masks_top1=0.0)}
    rows = cv.comparison_rows(region)
    assert [r["run"] for r in rows] == ["vit_128", "rn_512"]  # EVAL_RUNS order, missing skipped
    assert rows[0]["grid"] == rows[1]["grid"] == 16
    assert rows[0]["boxes_vs_crops"] == pytest.approx(12.5)
    assert rows[1]["boxes_vs_crops"] == pytest.approx(150.0)
    assert rows[1]["thing_masks_vs_crops"] == 0.0
    zero = cv.comparison_rows({"rn_128": dict(res, crops_top1=0.0)})
    assert math.isnan(zero[0]["boxes_vs_crops"])


def test_toy_rn_config_is_a_conv_tower_like_the_vit():
    register_toy_clip_configs()
    vit = open_clip.create_model(TOY_CLIP_NAME).visual
    rn = open_clip.create_model(TOY_CLIP_RN_NAME).visual
    n_vit = sum(p.numel() for p in vit.parameters())
    n_rn = sum(p.numel() for p in rn.parameters())
    assert abs(n_rn - n_vit) / n_vit < 0.05  # comparable parameter counts
    assert pretraining_input_size(vit) == pretraining_input_size(rn) == 64
    tower = CLIPTower(TOY_CLIP_RN_NAME)
    assert isinstance(tower, CLIPConvTower) and tower.stride == 32 and tower.embed_dim == 128


def test_kmeans_columns_panel(tmp_path):
    img = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 64, 3), np.uint8)).save(img)
    torch.manual_seed(0)
    panel = cv.kmeans_columns_panel(
        [("vit", TOY_CLIP_NAME, None, 64), ("cnn", TOY_CLIP_RN_NAME, None, 128)], [str(img)],
        k=2, cell=64)
    assert panel.size == (3 * 64, 18 + 64)
    arr = np.asarray(panel.convert("RGB"))
    # the maps are coloured over the image (top) and black over the padding (bottom)
    for col in (1, 2):
        assert arr[18 + 5, col * 64 + 5].sum() > 0 and arr[18 + 60, col * 64 + 5].sum() == 0
