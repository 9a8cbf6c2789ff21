"""train.compile.enabled=True through train_net.py: the compiled model trains like the eager one
(same losses to rounding) and its checkpoint has the eager model's keys. Slow: inductor compiles
the forward and backward on the CPU for about a minute (make test-all)."""
import json

import pytest
import torch

CONFIG = "configs/Synthetic/clipself_toy_patches.py"
OPTS = ["model.student.pretrained=null", "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0", "dataloader.test.num_workers=0", "train.max_iter=3",
        "train.eval_period=0", "train.log_period=1"]


def _losses(out):
    rows = [json.loads(line) for line in open(out / "metrics.json")]
    return [r["total_loss"] for r in rows if "total_loss" in r]


@pytest.mark.slow
def test_compiled_training_matches_eager(run_train_net, tmp_path):
    run_train_net(CONFIG, *OPTS, f'train.output_dir="{tmp_path / "eager"}"')
    log = run_train_net(CONFIG, *OPTS, "train.compile.enabled=True",
                        f'train.output_dir="{tmp_path / "compiled"}"')
    assert "torch.compile: the model's forward is compiled" in log
    assert _losses(tmp_path / "compiled") == pytest.approx(_losses(tmp_path / "eager"), abs=1e-4)
    eager = torch.load(tmp_path / "eager" / "model_final.pth", weights_only=False)["model"]
    compiled = torch.load(tmp_path / "compiled" / "model_final.pth", weights_only=False)["model"]
    assert compiled.keys() == eager.keys()
