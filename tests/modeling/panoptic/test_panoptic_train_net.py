"""The open-vocabulary panoptic model through train_net.py on a tiny synthetic world."""
import os
import re

from clipself.engine import read_eval_results

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
    results = read_eval_results(out)["results"]
    assert {"PQ", "SQ", "RQ"} <= set(results["panoptic_seg"])
    assert "mIoU" in results["sem_seg"] and "AP" in results["segm"]
    ckpt = os.path.join(out, "model_final.pth")
    run_train_net(CONFIG, "--eval-only", *TINY, f'train.init_checkpoint="{ckpt}"',
                  "model.ensemble_mode=clip", f'train.output_dir="{tmp_path / "eval"}"')
    assert "PQ" in read_eval_results(str(tmp_path / "eval"))["results"]["panoptic_seg"]
