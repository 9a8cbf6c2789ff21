"""Mean, spread and per-seed targets of the miniature over several worlds (docs/miniature.md §5)."""
import math

import pytest

from clipself.engine.seed_spread import spread, summarize, summary_tables


def _metrics(crops, patches, proposals, stuff, novel_original, novel_clipself, toy=68.0):
    return {
        "toy_clip": {"zero_shot_top1": toy},
        "region_recognition": {
            "before": {"crops_top1": crops, "boxes_top1": 4.0, "stuff_masks_top1": 55.0},
            "after_patches": {"boxes_top1": patches, "stuff_masks_top1": stuff,
                              "crops_top1": 30.0},
            "after": {"boxes_top1": proposals, "crops_top1": 20.0},
        },
        "detection": {"original": {"ap50_novel": novel_original, "ap50_base": 13.0},
                      "clipself": {"ap50_novel": novel_clipself, "ap50_base": 28.0}},
    }


def test_spread_by_hand():
    s = spread([1.0, 2.0, 6.0])
    assert s["mean"] == pytest.approx(3.0) and s["min"] == 1.0 and s["max"] == 6.0
    assert s["std"] == pytest.approx(math.sqrt(((4 + 1 + 9) / 2)))  # ddof 1
    assert spread([5.0])["std"] == 0.0 and spread([5.0, float("nan")])["n"] == 1
    assert math.isnan(spread([])["mean"]) and spread([])["n"] == 0


def test_targets_are_checked_per_seed():
    per_seed = {
        2: _metrics(70.0, 45.0, 56.0, 92.0, 3.0, 12.0),   # every target met
        0: _metrics(70.0, 41.0, 52.0, 89.0, 3.0, 8.0),    # patches 0.586, stuff, F-ViT 2.7x miss
        1: _metrics(60.0, 36.0, 46.0, 95.0, 0.0, 10.0, toy=66.0),  # novel 0 -> ratio NaN
    }
    s = summarize(per_seed)
    assert s["seeds"] == [0, 1, 2]
    t = s["targets"]
    assert t["patches_of_crops"]["values"][0] == pytest.approx(41 / 70)
    assert t["patches_of_crops"]["met"] == {0: False, 1: True, 2: True}
    assert t["proposals_of_crops"]["met"] == {0: False, 1: True, 2: True}
    assert t["stuff_patches"]["met"] == {0: False, 1: True, 2: True}
    assert t["fvit_novel_gain"]["met"] == {0: False, 1: False, 2: True}
    assert math.isnan(t["fvit_novel_gain"]["values"][1])
    assert t["toy_clip_top1"]["met"] == {0: True, 1: False, 2: True}
    assert not any(v["all_met"] for v in t.values())
    f = s["figures"]["boxes_patches"]
    assert f["values"] == {0: 41.0, 1: 36.0, 2: 45.0}
    assert f["spread"]["mean"] == pytest.approx(122 / 3)
    # a figure missing from a run is NaN, not an error
    assert math.isnan(summarize({0: {}})["figures"]["boxes_patches"]["values"][0])
    # the teacher's view of the regions (make demo's toy_clip stage) is read per seed
    teacher = {"teacher_regions": {"tight_boxes": {"top1": 40.0}, "grid_things": {"top1": 30.0}}}
    f = summarize({3: teacher})["figures"]
    assert f["teacher_tight"]["values"] == {3: 40.0} and f["teacher_grid_things"]["values"] == {
        3: 30.0}


def test_summary_tables_name_every_seed_and_miss():
    lines = summary_tables(summarize({0: _metrics(70.0, 45.0, 56.0, 92.0, 3.0, 12.0),
                                      5: _metrics(70.0, 30.0, 56.0, 92.0, 3.0, 12.0)}))
    assert lines[0].startswith("| figure | seed 0 | seed 5 | mean +- std |")
    row = next(r for r in lines if r.startswith("| patches dense box top-1 / crop top-1"))
    assert row.endswith("| 0.64 yes | 0.43 NO | NO |")
    assert any(r.startswith("| dense boxes top-1, + CLIPSelf patches | 45.0 | 30.0 | 37.5 +- ")
               for r in lines)
