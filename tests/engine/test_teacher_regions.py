"""clipself.engine.teacher_regions: the teacher's accuracy on the regions of each CLIPSelf mode."""
import math

import open_clip
import torch

from clipself.data.regions import dominant_class
from clipself.engine.teacher_regions import (
    PURITY_BINS,
    format_teacher_regions,
    teacher_region_accuracy,
    teacher_regions,
)
from clipself.engine.toy_clip import TOY_CLIP_NAME, register_toy_clip_configs
from clipself.synthetic import ALL_CLASSES, THING_CLASSES, generate_scene, semantic_map


def test_regions_of_each_kind():
    regions = teacher_regions(0, 2, 32, grids_per_scene=2)
    n_things = sum(len(generate_scene(0, "val", i)["things"]) for i in range(2))
    for kind in ("object_crops", "proposals", "tight_boxes"):
        assert regions[kind]["crops"].shape == (n_things, 3, 32, 32)
        assert (regions[kind]["labels"] < len(THING_CLASSES)).all()
    assert torch.equal(regions["object_crops"]["labels"], regions["proposals"]["labels"])
    assert torch.equal(regions["object_crops"]["labels"], regions["tight_boxes"]["labels"])
    # a tight crop shows the object larger than its x1.5 proposal crop: fewer background pixels
    assert not torch.equal(regions["tight_boxes"]["crops"], regions["proposals"]["crops"])
    grid = regions["grid"]
    r = len(grid["labels"])
    assert 2 <= r <= 2 * 2 * 20 and grid["crops"].shape == (r, 3, 32, 32)
    assert grid["areas"].shape == (r, len(ALL_CLASSES))
    assert torch.equal(grid["labels"], grid["areas"].argmax(1))
    assert ((grid["purity"] > 0) & (grid["purity"] <= 1)).all()
    # a one-cell grid of the first scene is the whole image: its label is the largest class
    scene = generate_scene(0, "val", 0)
    label_map = torch.from_numpy(semantic_map(scene).astype("int64"))
    whole = torch.tensor([[0.0, 0.0, scene["width"], scene["height"]]])
    label, share = dominant_class(label_map, whole, len(ALL_CLASSES))
    counts = torch.bincount(label_map.flatten(), minlength=256)[:len(ALL_CLASSES)]
    assert int(label) == int(counts.argmax()) and math.isclose(
        float(share), float(counts.max()) / label_map.numel(), rel_tol=1e-6)


def test_accuracy_rows_and_table():
    register_toy_clip_configs()
    torch.manual_seed(0)
    model = open_clip.create_model(TOY_CLIP_NAME, pretrained=None)
    regions = teacher_regions(0, 3, 64, grids_per_scene=1)
    acc = teacher_region_accuracy(model, open_clip.get_tokenizer(TOY_CLIP_NAME), regions)
    expected = {"object_crops", "proposals", "tight_boxes", "grid", "grid_things", "grid_stuff",
                *(f"grid_{name}" for name, _, _ in PURITY_BINS)}
    assert set(acc) == expected
    assert acc["grid"]["regions"] == len(regions["grid"]["labels"]) == sum(
        acc[f"grid_{name}"]["regions"] for name, _, _ in PURITY_BINS)
    assert acc["grid_things"]["regions"] + acc["grid_stuff"]["regions"] == acc["grid"]["regions"]
    for row in acc.values():
        for key in ("top1", "top5", "top1_regions"):
            assert math.isnan(row[key]) or 0 <= row[key] <= 100
        assert math.isnan(row["top1"]) or row["top1"] <= row["top5"]
    assert 0 <= acc["grid"]["top1_visible"] <= 100
    lines = format_teacher_regions(acc)
    assert len(lines) == 2 + len(expected) and lines[2].startswith("| object crops")
