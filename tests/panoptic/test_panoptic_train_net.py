"""The open-vocabulary panoptic model through train_net.py on a tiny synthetic world."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "configs/Synthetic/panoptic_toy_clipself.py"
TINY = [
    "model.backbone.clip.pretrained=null",
    "model.vocabulary.text_encoder.pretrained=null",
    "model.vocabulary.text_encoder.cache_dir=null",
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
    "model.criterion.num_points=256",
    "model.criterion.matcher.num_points=256",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from clipself.data.datasets.synthetic import prepare_world

    root = str(tmp_path_factory.mktemp("datasets"))
    prepare_world(root, num_train=6, num_val=2, seed=0)
    return root


def _run(world, *args):
    env = dict(os.environ, DETECTRON2_DATASETS=world, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "train_net.py", "--config-file", CONFIG, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def _copypaste(log, task):
    lines = [ln.split("copypaste: ", 1)[1] for ln in log.splitlines() if "copypaste: " in ln]
    for i, ln in enumerate(lines):
        if ln.strip() == f"Task: {task}":
            return dict(zip(lines[i + 1].split(","), map(float, lines[i + 2].split(","))))
    raise AssertionError(f"no copypaste block for {task}")


def test_train_then_eval_only(world, tmp_path):
    out = str(tmp_path / "pan")
    log = _run(world, *TINY, "train.max_iter=3", "train.eval_period=3", "train.log_period=1",
               "train.checkpointer.period=3", f'train.output_dir="{out}"')
    assert re.search(r"loss_ce: [\d.]+", log) and "loss_dice" in log
    pq = _copypaste(log, "panoptic_seg")
    assert {"PQ", "SQ", "RQ"} <= set(pq)
    assert "mIoU" in _copypaste(log, "sem_seg")
    assert "AP" in _copypaste(log, "segm")
    ckpt = os.path.join(out, "model_final.pth")
    log2 = _run(world, "--eval-only", *TINY, f'train.init_checkpoint="{ckpt}"',
                "model.ensemble_mode=clip", f'train.output_dir="{tmp_path / "eval"}"')
    assert "PQ" in _copypaste(log2, "panoptic_seg")
