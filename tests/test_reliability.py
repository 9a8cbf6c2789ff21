"""Faults a demanding user tries: checkpoints that would run code, --eval-only without weights,
override values of the wrong type. Each entry point refuses with a message that says what to do."""
import os

import pytest

from clipself.checkpoint import UnsafeCheckpointError
from clipself.modeling import CLIPViT

from tests.engine.test_checkpointer import evil_files
from tests.helpers import REPO, load_file

FVIT = "configs/Synthetic/fvit_toy_clipself.py"
CLIPSELF = "configs/Synthetic/clipself_toy_patches.py"
FVIT_TINY = [
    "model.backbone.bottom_up.clip.pretrained=null",
    "model.roi_heads.box_predictor.vocabulary.text_encoder.pretrained=null",
    "model.roi_heads.box_predictor.vocabulary.text_encoder.cache_dir=null",
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
]


@pytest.fixture
def evil(tmp_path):
    pkl, pth, marker = evil_files(tmp_path)
    yield pkl, pth
    assert not marker.exists(), "a checkpoint ran code"


def test_tools_and_towers_refuse_payload_checkpoints(evil, tmp_path):
    pkl, pth = evil
    for path in (pkl, pth):
        with pytest.raises(UnsafeCheckpointError):
            CLIPViT("ToyCLIP-ViT-P8", pretrained=path)
    convert = load_file(os.path.join(REPO, "tools", "convert_checkpoint.py"), "convert_evil")
    for argv in (["to-open-clip", "--model", "ToyCLIP-ViT-P8", "--input", pkl],
                 ["to-clipself", "--model", "ToyCLIP-ViT-P8", "--input", pth],
                 ["fvit-from-mmdet", "--input", pth], ["inspect", "--input", pkl]):
        with pytest.raises(Exception):
            convert.main(argv + ([] if argv[0] == "inspect" else
                                 ["--output", str(tmp_path / "out.pth")]))
    export = load_file(os.path.join(REPO, "tools", "export_clipself.py"), "export_evil")
    for path in (pkl, pth):
        with pytest.raises(UnsafeCheckpointError):
            export.main(["--config-file", os.path.join(REPO, CLIPSELF), "--checkpoint", path,
                         "--output", str(tmp_path / "exported.pt")])
    demo = load_file(os.path.join(REPO, "tools", "demo.py"), "demo_evil")
    image = os.path.join(REPO, "docs", "demo_detections.png")
    with pytest.raises(UnsafeCheckpointError):
        demo.main(["--config-file", os.path.join(REPO, FVIT), "--input", image,
                   "--output", str(tmp_path / "demo"), *FVIT_TINY[:2],
                   f'train.init_checkpoint="{pkl}"'])
    assert not (tmp_path / "out.pth").exists() and not (tmp_path / "exported.pt").exists()


def test_train_net_refuses_payload_checkpoints(evil, train_net_process, tmp_path):
    pkl, pth = evil
    runs = [("--eval-only", f'train.init_checkpoint="{pkl}"'),
            (f'train.init_checkpoint="{pth}"', "train.max_iter=1")]
    for args in runs:
        proc = train_net_process(FVIT, *args, *FVIT_TINY, f'train.output_dir="{tmp_path}/o"')
        assert proc.returncode != 0
        assert "UnsafeCheckpointError" in proc.stderr and "could run code" in proc.stderr


def test_eval_only_needs_weights(train_net_process, tmp_path):
    out = f'train.output_dir="{tmp_path}/o"'
    proc = train_net_process(FVIT, "--eval-only", *FVIT_TINY, out)
    assert proc.returncode != 0
    assert "--eval-only without weights" in proc.stderr
    assert "train.init_checkpoint=" in proc.stderr and "train.allow_random_init=True" in proc.stderr
    proc = train_net_process(FVIT, "--eval-only", *FVIT_TINY, out, "train.allow_random_init=True")
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_override_of_the_wrong_type_fails_before_building(train_net_process, tmp_path):
    proc = train_net_process(FVIT, *FVIT_TINY, "train.max_iter=abc",
                             f'train.output_dir="{tmp_path}"')
    assert proc.returncode != 0
    assert "train.max_iter=abc: expected int" in proc.stderr
    assert "Model:" not in proc.stdout + proc.stderr  # nothing was built
