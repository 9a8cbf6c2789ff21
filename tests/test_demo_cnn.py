"""`make demo-cnn` shortened (tiny world, 10 pre-training steps): every stage runs end to end.

The integration test of tools/cnn_vs_vit.py; it checks the pipeline, not the accuracy of the
full run. Slow (two toy CLIPs and five train_net.py evaluations).
"""
import json
import math
import os
import runpy
import sys

import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quick_cnn_vs_vit(tmp_path, monkeypatch):
    out = tmp_path / "demo_cnn"
    monkeypatch.setattr(sys, "argv", ["cnn_vs_vit.py", "--output", str(out), "--demo",
                                      str(tmp_path / "no_demo"), "--quick"])
    runpy.run_path(os.path.join(ROOT, "tools", "cnn_vs_vit.py"), run_name="__main__")
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["toy_clip"]) == {"vit", "rn"}
    for tower, info in m["toy_clip"].items():
        assert os.path.isfile(info["checkpoint"]) and not info["reused"]
        assert info["settings"] == m["toy_clip"]["vit"]["settings"]  # the same recipe
    assert m["toy_clip"]["rn"]["model_name"] == "ToyCLIP-RN"
    assert set(m["region_recognition"]) == {"vit_64", "vit_128", "rn_128", "rn_256", "rn_512"}
    for run, res in m["region_recognition"].items():
        for key in ("boxes_top1", "boxes_top5", "thing_masks_top1", "stuff_masks_top1",
                    "crops_top1"):
            assert math.isfinite(res[key]) and 0 <= res[key] <= 100, (run, key)
        assert res["boxes_top1"] <= res["boxes_top5"]
    # crops do not depend on the student's input side
    rr = m["region_recognition"]
    assert rr["rn_128"]["crops_top1"] == rr["rn_512"]["crops_top1"]
    assert rr["vit_64"]["crops_top1"] == rr["vit_128"]["crops_top1"]
    assert [r["grid"] for r in m["comparison"]] == [8, 16, 4, 8, 16]
    panel = Image.open(out / "kmeans_cnn_vs_vit.png")
    assert panel.size == (4 * 192, 18 + 2 * 192)  # input + 3 maps, 2 images
    report = (out / "REPORT.md").read_text()
    assert "| toy CNN (ToyCLIP-RN) | 512 px | 16 x 16 |" in report
    assert "same grid (16 x 16)" in report
    # a second run reuses both toy CLIPs (cached by their settings)
    monkeypatch.setattr(sys, "argv", ["cnn_vs_vit.py", "--output", str(out), "--demo",
                                      str(tmp_path / "no_demo"), "--quick"])
    runpy.run_path(os.path.join(ROOT, "tools", "cnn_vs_vit.py"), run_name="__main__")
    m2 = json.loads((out / "metrics.json").read_text())
    assert all(info["reused"] for info in m2["toy_clip"].values())
    assert m2["region_recognition"]["rn_512"] == rr["rn_512"]
