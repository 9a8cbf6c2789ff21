"""tools/global_sweep.py: the picture, and the quick sweep end to end (slow)."""
import json
import math
import os
import sys

import pytest
from PIL import Image

from tests.helpers import REPO, load_file


def _tool():
    return load_file(os.path.join(REPO, "tools", "global_sweep.py"), "global_sweep_tool")


def test_draw_writes_one_point_per_finite_setting(tmp_path, monkeypatch):
    tool = _tool()
    rows = [
        {"kind": "weight", "value": 0.0, "label": "w=0", "image_mAP": 60.0, "boxes_top1": 40.0},
        {"kind": "weight", "value": 1.0, "label": "w=1", "image_mAP": 70.0, "boxes_top1": 35.0},
        {"kind": "alpha", "value": 0.5, "label": "alpha=0.5", "image_mAP": 65.0,
         "boxes_top1": 30.0},
        {"kind": "alpha", "value": 0.7, "label": "alpha=0.7", "image_mAP": float("nan"),
         "boxes_top1": 33.0},
    ]
    drawn, curves = [], []
    original = tool.Figure.savefig

    def spy(fig, path, **kw):
        ax = fig.axes[0]
        drawn.extend((line.get_label(), list(line.get_xdata())) for line in ax.get_lines()
                     if not line.get_label().startswith("_"))  # the points, not the curves
        curves.extend(list(line.get_xdata()) for line in ax.get_lines()
                      if line.get_label().startswith("_"))
        return original(fig, path, **kw)

    monkeypatch.setattr(tool.Figure, "savefig", spy)
    path = tool.draw(rows, str(tmp_path / "p.png"))
    assert Image.open(path).size == (660, 504)  # 5.5 x 4.2 in at 120 dpi
    assert drawn == [("image-level term weight", [60.0, 70.0]),
                     ("alpha ensemble of weight 0", [65.0])]  # the NaN point is left out
    assert curves == [[60.0, 70.0], [65.0, 60.0]]  # the alpha curve ends at weight 0 (alpha 1)


@pytest.mark.slow
def test_quick_global_sweep(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    monkeypatch.setattr(sys, "argv", ["global_sweep.py", "--output", str(out), "--demo",
                                      str(tmp_path / "no_demo"), "--quick"])
    metrics = _tool().main()
    assert [r["label"] for r in metrics["rows"]] == [
        "w=0", "w=0.1", "w=0.5", "w=1", "alpha=0", "alpha=0.5", "alpha=0.7"]
    for r in metrics["rows"]:
        assert 0 <= r["boxes_top1"] <= 100 and 0 < r["image_mAP"] <= 100, r
    losses = metrics["losses"]
    assert math.isnan(losses["0"]["loss_global"]) and losses["1"]["loss_global"] >= 0
    assert all(math.isfinite(v["loss_clipself"]) for v in losses.values())
    assert json.loads((out / "metrics.json").read_text())["rows"] == metrics["rows"]
    assert (out / "TABLE.md").is_file() and Image.open(out / "global_sweep.png").size[0] > 0
