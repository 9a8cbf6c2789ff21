"""The synthetic world in memory (generate_scene) and on disk (prepare_world): classes, determinism,
masks, captions, panoptic / semantic maps."""
import filecmp
import os
import re

import numpy as np
import pytest

from clipself.synthetic import (
    ALL_CLASSES,
    BASE_CLASSES,
    CATEGORIES,
    COLOURS,
    NOVEL_CLASSES,
    SHAPES,
    STUFF_CLASSES,
    THING_CLASSES,
    generate_scene,
    make_caption,
    panoptic_map,
    prepare_world,
    semantic_map,
)
from clipself.synthetic.world import MIN_VISIBLE_AREA, MIN_VISIBLE_FRACTION

SCENES = [generate_scene(0, "val", i) for i in range(40)]
_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}


def test_class_lists_and_split():
    assert len(THING_CLASSES) == 30 and len(set(THING_CLASSES)) == 30
    assert len(STUFF_CLASSES) == 5 and ALL_CLASSES == THING_CLASSES + STUFF_CLASSES
    assert THING_CLASSES[0] == "red circle" and THING_CLASSES[-1] == "purple hexagon"
    assert len(BASE_CLASSES) == 24 and len(NOVEL_CLASSES) == 6
    assert set(BASE_CLASSES).isdisjoint(NOVEL_CLASSES)
    assert set(BASE_CLASSES) | set(NOVEL_CLASSES) == set(THING_CLASSES)
    # novel classes are unseen combinations of seen words
    assert {n.split()[1] for n in BASE_CLASSES} == set(SHAPES)
    assert {n.split()[0] for n in BASE_CLASSES} == set(COLOURS)
    assert [c["id"] for c in CATEGORIES] == list(range(1, 36))
    assert [c["name"] for c in CATEGORIES] == list(ALL_CLASSES)
    assert [c["isthing"] for c in CATEGORIES] == [1] * 30 + [0] * 5


def test_scene_is_a_pure_function_of_seed_split_index():
    a, b = generate_scene(3, "train", 7), generate_scene(3, "train", 7)
    assert np.array_equal(a["image"], b["image"]) and a["caption"] == b["caption"]
    assert [t["bbox"] for t in a["things"]] == [t["bbox"] for t in b["things"]]
    assert all(np.array_equal(s["mask"], t["mask"]) for s, t in zip(a["things"], b["things"]))
    for other in (generate_scene(4, "train", 7), generate_scene(3, "val", 7),
                  generate_scene(3, "train", 8)):
        assert a["image"].shape != other["image"].shape or not np.array_equal(
            a["image"], other["image"])


def test_sizes_and_counts():
    shapes = {s["image"].shape for s in SCENES}
    assert len(shapes) > 10 and any(h != w for h, w, _ in shapes)
    for s in SCENES:
        h, w, c = s["image"].shape
        assert c == 3 and s["image"].dtype == np.uint8
        assert (h, w) == (s["height"], s["width"]) and s["stuff_map"].shape == (h, w)
        assert 96 <= h <= 192 and 96 <= w <= 192 and h % 8 == 0 and w % 8 == 0
        assert 1 <= len(s["things"]) <= 5 and 1 <= len(s["stuff"]) <= 2
    assert generate_scene(0, "train", 0, image_size=128)["image"].shape == (128, 128, 3)
    assert generate_scene(0, "train", 0, image_size=(96, 160))["image"].shape == (96, 160, 3)


def test_masks_bboxes_and_occlusion():
    occluded = 0
    for s in SCENES:
        union = np.zeros((s["height"], s["width"]), np.int64)
        for t in s["things"] + s["stuff"]:
            union += t["mask"]
            assert t["area"] == int(t["mask"].sum()) > 0
        assert (union == 1).all()  # segments tile the image exactly
        for t in s["things"]:
            ys, xs = np.nonzero(t["mask"])
            x, y, w, h = t["bbox"]
            assert (x, y, x + w - 1, y + h - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
            assert t["area"] >= MIN_VISIBLE_AREA
            assert t["area"] >= MIN_VISIBLE_FRACTION * t["full_area"]
            assert t["category_id"] == THING_CLASSES.index(t["name"]) + 1
            assert t["novel"] == (t["name"] in NOVEL_CLASSES)
            occluded += t["area"] < t["full_area"]
        for st in s["stuff"]:
            assert st["name"] in STUFF_CLASSES and st["category_id"] == ALL_CLASSES.index(
                st["name"]) + 1
    assert occluded > 0  # partial occlusion happens


def test_objects_stand_out_from_background():
    # the mean colour of an object differs clearly from the stuff right around it
    for s in SCENES[:10]:
        img = s["image"].astype(np.float32)
        for t in s["things"]:
            x, y, w, h = t["bbox"]
            ring = np.zeros_like(t["mask"])
            ring[max(y - 3, 0):y + h + 3, max(x - 3, 0):x + w + 3] = True
            ring &= np.any([st["mask"] for st in s["stuff"]], axis=0)  # visible stuff only
            if ring.sum() < 20:
                continue
            diff = np.abs(img[t["mask"]].mean(0) - img[ring].mean(0)).max()
            assert diff > 25, (s["index"], t["name"])


def test_caption_example_and_every_object_mentioned():
    things = ["red circle", "blue star", "green cross", "blue star"]
    assert make_caption(things, ["brick wall"]) == (
        "a photo of a red circle, two blue stars and a green cross on a brick wall.")
    assert make_caption(["purple cross"] * 3, ["sky", "grass"]) == (
        "a photo of three purple crosses against the sky and grass.")
    for s in SCENES:
        names = [t["name"] for t in s["things"]]
        cap = s["caption"]
        for name in set(names):
            n = names.count(name)
            colour, shape = name.split()
            phrase = f"a {name}" if n == 1 else f"{_WORDS[n]} {colour} {shape}"
            assert re.search(rf"\b{phrase}", cap), (cap, name, n)
        for st in s["stuff"]:
            assert st["name"].split()[0] in cap


def test_panoptic_and_semantic_maps():
    for s in SCENES[:20]:
        for hide in (False, True):
            pan, segments = panoptic_map(s, hide_novel=hide)
            sem = semantic_map(s, hide_novel=hide)
            ids = set(np.unique(pan).tolist()) - {0}
            assert ids == {seg["id"] for seg in segments}
            for seg in segments:
                m = pan == seg["id"]
                assert int(m.sum()) == seg["area"]
                assert (sem[m] == seg["category_id"] - 1).all()
            assert ((pan == 0) == (sem == 255)).all()
            novel = [t for t in s["things"] if t["novel"]]
            assert (pan == 0).any() == (hide and bool(novel))


def test_novel_things_appear_in_training_scenes():
    scenes = [generate_scene(0, "train", i) for i in range(30)]
    names = {t["name"] for s in scenes for t in s["things"]}
    assert names & set(NOVEL_CLASSES) and names & set(BASE_CLASSES)


def _tree(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)


def test_prepare_world_is_byte_identical_for_a_seed(tmp_path):
    a = prepare_world(str(tmp_path / "a"), 5, 3, seed=1, workers=1)
    b = prepare_world(str(tmp_path / "b"), 5, 3, seed=1, workers=2)
    c = prepare_world(str(tmp_path / "c"), 5, 3, seed=2, workers=1)
    files = _tree(a["dir"])
    assert files == _tree(b["dir"]) == _tree(c["dir"])
    assert len(files) == 8 * 3 + 8 + 1
    for f in files:
        assert filecmp.cmp(os.path.join(a["dir"], f), os.path.join(b["dir"], f), shallow=False), f
    assert not filecmp.cmp(os.path.join(a["dir"], "train", "000000.png"),
                           os.path.join(c["dir"], "train", "000000.png"), shallow=False)
    # a smaller world is a prefix of a larger one (image i depends only on seed, split, i)
    d = prepare_world(str(tmp_path / "a"), 2, 1, seed=1, workers=1)
    assert len(os.listdir(d["train_images"])) == 2  # stale images were removed
    png = os.path.join("val", "000000.png")
    assert filecmp.cmp(os.path.join(d["dir"], png), os.path.join(b["dir"], png), shallow=False)


@pytest.mark.parametrize("split", ["train", "val"])
def test_scene_image_matches_written_png(tmp_path, split):
    from PIL import Image

    paths = prepare_world(str(tmp_path), 2, 2, seed=5, workers=1)
    img = np.asarray(Image.open(os.path.join(paths[f"{split}_images"], "000001.png")))
    assert np.array_equal(img, generate_scene(5, split, 1)["image"])
