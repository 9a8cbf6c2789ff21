"""The miniature paper, shortened (tiny world, a few iterations): every stage runs end to end.

This is the CI integration test of `make demo`; it checks the pipeline, not the accuracy of the
full run.
"""
import json
import math
import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_miniature_paper(tmp_path, monkeypatch):
    out = tmp_path / "demo"
    monkeypatch.setattr(sys, "argv", ["miniature_paper.py", "--output", str(out), "--quick"])
    runpy.run_path(os.path.join(ROOT, "tools", "miniature_paper.py"), run_name="__main__")
    for name in ("REPORT.md", "metrics.json", "kmeans.png", "toy_clip/toy_clip.pt",
                 "clipself/model_final.pth", "clipself/toy_clipself.pt"):
        assert (out / name).exists(), name
    m = json.loads((out / "metrics.json").read_text())
    assert 0 <= m["toy_clip"]["zero_shot_top1"] <= 100
    for when in ("before", "after", "after_proposals", "after_mixed"):
        res = m["region_recognition"][when]
        for key in ("boxes_top1", "boxes_top5", "thing_masks_top1", "stuff_masks_top1",
                    "crops_top1"):
            assert math.isfinite(res[key]) and 0 <= res[key] <= 100, (when, key)
        assert res["boxes_top1"] <= res["boxes_top5"]
    assert m["clipself"]["loss_last"] < m["clipself"]["loss_first"]
    assert m["clipself_proposals"]["loss_last"] < m["clipself_proposals"]["loss_first"]
    for backbone in ("original", "clipself"):
        det = m["detection"][backbone]
        for key in ("ap50_novel", "ap50_base"):
            assert math.isfinite(det[key]) and 0 <= det[key] <= 100, (backbone, key)
        assert os.path.isfile(det["checkpoint"])
    stages = {"world", "toy_clip", "before", "clipself", "proposals", "mixed", "alpha",
              "pictures", "fvit", "total"}
    assert set(m["region_recognition"]["alpha"]) == {
        "patches_alpha0.7", "patches_alpha0.5", "proposals_alpha0.7", "proposals_alpha0.5"}
    assert set(m["seconds"]) >= stages
    report = (out / "REPORT.md").read_text()
    assert "Dense features, toy CLIP + CLIPSelf" in report
    assert "| toy CLIP + CLIPSelf (proposals) |" in report  # the detection table
