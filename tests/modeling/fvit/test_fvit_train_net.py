"""F-ViT through train_net.py on a tiny synthetic world: training, evaluation, --eval-only."""
import os

import pytest
import torch

from clipself.engine import read_eval_results

CONFIG = "configs/Synthetic/fvit_toy_clipself.py"
TINY = [
    "model.backbone.bottom_up.clip.pretrained=null",
    "model.roi_heads.box_predictor.vocabulary.text_encoder.pretrained=null",
    "model.roi_heads.box_predictor.vocabulary.text_encoder.cache_dir=null",
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
]


def test_train_then_eval_only(run_train_net, tmp_path):
    out = str(tmp_path / "fvit")
    log = run_train_net(CONFIG, *TINY, "train.max_iter=4", "train.eval_period=4",
                        "train.log_period=2", "train.checkpointer.period=4",
                        f'train.output_dir="{out}"')
    assert "loss_cls" in log and "loss_rpn_cls" in log
    row = read_eval_results(out)["results"]["bbox"]
    assert {"AP50_novel", "AP50_base", "AP50_all"} <= set(row)
    ckpt = os.path.join(out, "model_final.pth")
    assert os.path.isfile(ckpt)
    # the vocabulary is not part of the checkpoint
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
    assert "roi_heads.box_predictor.temperature" in state
    assert not any("class_embeddings" in k for k in state)
    run_train_net(CONFIG, "--eval-only", *TINY, f'train.init_checkpoint="{ckpt}"',
                  f'train.output_dir="{tmp_path / "eval"}"')
    row2 = read_eval_results(str(tmp_path / "eval"))["results"]["bbox"]
    for k in ("AP50_novel", "AP50_base", "AP50_all"):
        assert row2[k] == pytest.approx(row[k], abs=1e-6, nan_ok=True), k
