"""The open-vocabulary panoptic model through train_net.py on a tiny synthetic world."""
import os
import re

from clipself.utils import parse_copypaste

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


def test_train_then_eval_only(run_train_net, tmp_path):
    out = str(tmp_path / "pan")
    log = run_train_net(CONFIG, *TINY, "train.max_iter=3", "train.eval_period=3",
                        "train.log_period=1", "train.checkpointer.period=3",
                        f'train.output_dir="{out}"')
    assert re.search(r"loss_ce: [\d.]+", log) and "loss_dice" in log
    pq = parse_copypaste(log, "panoptic_seg")
    assert {"PQ", "SQ", "RQ"} <= set(pq)
    assert "mIoU" in parse_copypaste(log, "sem_seg")
    assert "AP" in parse_copypaste(log, "segm")
    ckpt = os.path.join(out, "model_final.pth")
    log2 = run_train_net(CONFIG, "--eval-only", *TINY, f'train.init_checkpoint="{ckpt}"',
                         "model.ensemble_mode=clip", f'train.output_dir="{tmp_path / "eval"}"')
    assert "PQ" in parse_copypaste(log2, "panoptic_seg")
