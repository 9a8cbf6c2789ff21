import os
import runpy
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_kmeans_tool_writes_a_panel(tmp_path, monkeypatch):
    img = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 64, 3), np.uint8)).save(img)
    out = tmp_path / "k.png"
    monkeypatch.setattr(sys, "argv", [
        "visualize_kmeans.py", "--model", "ToyCLIP-ViT-P8", "--checkpoint", "none", "none",
        "--labels", "before", "after", "--input", str(img), "--size", "64", "--k", "3",
        "--cell", "64", "--output", str(out)])
    runpy.run_path(os.path.join(ROOT, "tools", "visualize_kmeans.py"), run_name="__main__")
    panel = Image.open(out)
    assert panel.size == (3 * 64, 18 + 64)  # input + 2 maps, one row, title strip
    # the map columns are coloured where the image is and black over the padding
    arr = np.asarray(panel.convert("RGB"))
    assert arr[18 + 5, 64 + 5].sum() > 0 and arr[18 + 60, 64 + 5].sum() == 0
