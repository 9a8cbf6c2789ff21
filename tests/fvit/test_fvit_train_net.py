"""F-ViT through train_net.py on a tiny synthetic world: training, evaluation, --eval-only."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "configs/Synthetic/fvit_toy_clipself.py"
TINY = [
    "model.backbone.bottom_up.clip.pretrained=null",
    "model.roi_heads.box_predictor.vocabulary.text_encoder.pretrained=null",
    "model.roi_heads.box_predictor.vocabulary.text_encoder.cache_dir=null",
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from clipself.data.datasets.synthetic import prepare_world

    root = str(tmp_path_factory.mktemp("datasets"))
    prepare_world(root, num_train=8, num_val=3, seed=0)
    return root


def _run(world, *args):
    env = dict(os.environ, DETECTRON2_DATASETS=world, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "train_net.py", "--config-file", CONFIG, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def _ap50(log):
    header = re.findall(r"copypaste: (AP,AP50.*)", log)
    values = re.findall(r"copypaste: ([-\d.,nan]+)$", log, flags=re.M)
    assert header and values, log[-2000:]
    row = dict(zip(header[-1].split(","), (float(v) for v in values[-1].split(","))))
    return row


def test_train_then_eval_only(world, tmp_path):
    out = str(tmp_path / "fvit")
    log = _run(world, *TINY, "train.max_iter=4", "train.eval_period=4", "train.log_period=2",
               "train.checkpointer.period=4", f'train.output_dir="{out}"')
    assert "loss_cls" in log and "loss_rpn_cls" in log
    row = _ap50(log)
    assert {"AP50_novel", "AP50_base", "AP50_all"} <= set(row)
    ckpt = os.path.join(out, "model_final.pth")
    assert os.path.isfile(ckpt)
    # the vocabulary is not part of the checkpoint
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
    assert "roi_heads.box_predictor.temperature" in state
    assert not any("class_embeddings" in k for k in state)
    log2 = _run(world, "--eval-only", *TINY, f'train.init_checkpoint="{ckpt}"',
                f'train.output_dir="{tmp_path / "eval"}"')
    row2 = _ap50(log2)
    for k in ("AP50_novel", "AP50_base", "AP50_all"):
        assert row2[k] == pytest.approx(row[k], abs=1e-6, nan_ok=True), k
