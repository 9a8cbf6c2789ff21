"""CAT-Seg through train_net.py on a tiny synthetic world: train, checkpoint, --eval-only."""
import os
import re

import torch

from clipself.engine import read_eval_results

CONFIG = "configs/Synthetic/catseg_toy.py"
TINY = [
    "model.clip.pretrained=null",
    "model.vocabulary.text_encoder.pretrained=null",
    "model.vocabulary.text_encoder.cache_dir=null",
    "model.vocabulary.templates=single",
    "model.aggregator.prompt_channels=1",
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
]


def test_train_then_eval_only(run_train_net, tmp_path):
    out = str(tmp_path / "catseg")
    log = run_train_net(CONFIG, *TINY, "train.max_iter=3", "train.eval_period=3",
                        "train.log_period=1", "train.checkpointer.period=3",
                        f'train.output_dir="{out}"')
    assert re.search(r"total_loss: [\d.]+", log)  # = loss_sem_seg, the only loss
    written = read_eval_results(out)
    sem = written["results"]["sem_seg"]
    assert {"mIoU", "mACC", "pACC"} <= set(sem) and 0 <= sem["mIoU"] <= 100
    ckpt = os.path.join(out, "model_final.pth")
    assert written["iteration"] == 3 and written["checkpoint"] == ckpt
    assert written["config_file"].endswith(CONFIG)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
    assert not any("text_embeddings" in k for k in state)  # the vocabulary is not a weight
    run_train_net(CONFIG, "--eval-only", *TINY, f'train.init_checkpoint="{ckpt}"',
                  f'train.output_dir="{tmp_path / "eval"}"')
    again = read_eval_results(str(tmp_path / "eval"))
    assert again["results"]["sem_seg"]["mIoU"] == sem["mIoU"] and again["checkpoint"] == ckpt
    assert again["iteration"] is None
    # CAT-Seg's sliding-window protocol runs through the same path
    run_train_net(CONFIG, "--eval-only", *TINY, f'train.init_checkpoint="{ckpt}"',
                  "model.sliding_window=True", f'train.output_dir="{tmp_path / "sw"}"')
    assert 0 <= read_eval_results(str(tmp_path / "sw"))["results"]["sem_seg"]["mIoU"] <= 100
