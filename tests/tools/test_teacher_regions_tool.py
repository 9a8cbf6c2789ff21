"""tools/teacher_regions.py end to end on a random-weight toy CLIP and two scenes."""
import json
import os

import open_clip
import torch

from clipself.checkpoint import save_checkpoint_file
from clipself.engine.toy_clip import TOY_CLIP_NAME, register_toy_clip_configs

from tests.helpers import REPO, load_file


def test_tool_prints_the_table_and_writes_json(tmp_path, capsys):
    register_toy_clip_configs()
    torch.manual_seed(0)
    ckpt = str(tmp_path / "toy.pt")
    save_checkpoint_file(open_clip.create_model(TOY_CLIP_NAME, pretrained=None).state_dict(), ckpt)
    tool = load_file(os.path.join(REPO, "tools", "teacher_regions.py"), "teacher_regions_tool")
    out = tmp_path / "r.json"
    result = tool.main(["--checkpoint", ckpt, "--num-scenes", "2", "--grids-per-scene", "1",
                        "--output", str(out)])
    printed = capsys.readouterr().out
    assert "| grid cells labelled by stuff |" in printed
    saved = json.loads(out.read_text())
    assert saved["settings"]["num_scenes"] == 2 and saved["settings"]["crop_size"] == 64
    assert saved["accuracy"]["grid"]["regions"] == result["accuracy"]["grid"]["regions"] > 0
