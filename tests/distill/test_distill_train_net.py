"""CLIPSelf distillation through train_net.py on a tiny synthetic world (random toy CLIP)."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "configs/Synthetic/clipself_toy_patches.py"
TINY = [
    "model.student.pretrained=null",
    "dataloader.train.total_batch_size=4",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
    "optimizer.lr=1e-3",
    "lr_multiplier.warmup_length=0.1",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from clipself.data.datasets.synthetic import prepare_world

    root = str(tmp_path_factory.mktemp("datasets"))
    prepare_world(root, num_train=12, num_val=3, seed=0)
    return root


def _losses(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        rows = [json.loads(line) for line in f]
    return [r["total_loss"] for r in rows if "total_loss" in r]


def test_distillation_lowers_the_loss_and_evaluates(world, tmp_path):
    out = str(tmp_path / "distill")
    env = dict(os.environ, DETECTRON2_DATASETS=world, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "train_net.py", "--config-file", CONFIG, *TINY, "train.max_iter=30",
         "train.eval_period=30", "train.log_period=5", f'train.output_dir="{out}"'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    losses = _losses(out)
    assert len(losses) == 6 and losses[-1] < 0.7 * losses[0], losses
    log = proc.stdout + proc.stderr
    assert "copypaste: Task: region_recognition" in log
    assert "copypaste: boxes_top1,boxes_top5,thing_masks_top1" in log


def _train_net():
    spec = importlib.util.spec_from_file_location("train_net", os.path.join(ROOT, "train_net.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_resume_restores_iteration_and_optimizer(world, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", world)
    from clipself.data.datasets.synthetic import register_synthetic

    register_synthetic(world)  # point the synth_* names at this world
    tn = _train_net()
    out = str(tmp_path / "resume")
    opts = [*TINY, "train.max_iter=4", "train.eval_period=0", "train.checkpointer.period=2",
            f'train.output_dir="{out}"']
    args = tn.default_argument_parser().parse_args(["--config-file", CONFIG, *opts])
    cfg = tn.setup(args)
    tn.do_train(args, cfg)
    saved = torch.load(os.path.join(out, "model_final.pth"), weights_only=False)
    assert saved["iteration"] == 3

    # resume: the trainer continues after iteration 3 with the saved optimizer state
    args = tn.default_argument_parser().parse_args(
        ["--config-file", CONFIG, "--resume", *opts[:-3], "train.max_iter=6",
         "train.eval_period=0", f'train.output_dir="{out}"']
    )
    cfg = tn.setup(args)
    trainer, _ = tn.build_trainer(args, cfg)
    assert trainer.iter == 3
    state = trainer.optimizer.state_dict()["state"]
    assert state and all(
        torch.equal(state[k]["exp_avg"], saved["trainer"]["optimizer"]["state"][k]["exp_avg"])
        for k in saved["trainer"]["optimizer"]["state"]
    )
    sd = trainer.model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in saved["model"].items())
    trainer.train(trainer.iter + 1, cfg.train.max_iter)
    assert trainer.iter == 6 and _losses(out)[-1] > 0


def _eval_only(world, ckpt, *extra):
    env = dict(os.environ, DETECTRON2_DATASETS=world, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "train_net.py", "--eval-only", *extra, "--config-file", CONFIG,
         *TINY[1:], f'model.student.pretrained="{ckpt}"'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [ln.split("copypaste: ", 1)[1] for ln in (proc.stdout + proc.stderr).splitlines()
             if "copypaste: " in ln]
    i = lines.index("Task: region_recognition")
    return dict(zip(lines[i + 1].split(","), map(float, lines[i + 2].split(","))))


def test_region_evaluation_gathers_over_two_processes(world, tmp_path):
    """Two gloo processes each see half the images; the gathered result equals one process."""
    import open_clip

    from clipself.modeling.backbone.clip_vit import register_project_model_configs

    register_project_model_configs()
    torch.manual_seed(0)
    ckpt = str(tmp_path / "toy.pt")  # fixed weights (text tower too) shared by both ranks
    torch.save(open_clip.create_model("ToyCLIP-ViT-P8").state_dict(), ckpt)
    one = _eval_only(world, ckpt, "--num-gpus", "1")
    two = _eval_only(world, ckpt, "--num-gpus", "2", "--dist-url", "auto")
    assert one["num_thing_regions"] > 0
    assert two == pytest.approx(one, abs=1e-3)
