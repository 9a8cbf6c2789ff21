"""Exact resume for every trainer: a run killed with SIGKILL and resumed with --resume ends with
the same weights (torch.equal) as an uninterrupted run with the same seed."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["train.max_iter=8", "train.checkpointer.period=2", "train.eval_period=0",
          "train.log_period=1", "dataloader.evaluator=null", "dataloader.test.num_workers=0"]
CASES = {
    "clipself_patches": ("configs/Synthetic/clipself_toy_patches.py", [
        "model.student.pretrained=null", "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0"]),
    "clipself_proposals": ("configs/Synthetic/clipself_toy_proposals.py", [
        "model.student.pretrained=null", "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0"]),
    "fvit": ("configs/Synthetic/fvit_toy_clipself.py", [  # two workers: their RNGs do not matter
        "model.backbone.bottom_up.clip.pretrained=null",
        "model.roi_heads.box_predictor.vocabulary.text_encoder.pretrained=null",
        "model.roi_heads.box_predictor.vocabulary.text_encoder.cache_dir=null",
        "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=2"]),
    "panoptic": ("configs/Synthetic/panoptic_toy_clipself.py", [
        "model.backbone.clip.pretrained=null", "model.vocabulary.text_encoder.pretrained=null",
        "model.vocabulary.text_encoder.cache_dir=null", "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0", "model.criterion.num_points=256",
        "model.criterion.matcher.num_points=256"]),
    "catseg": ("configs/Synthetic/catseg_toy.py", [
        "model.clip.pretrained=null", "model.vocabulary.text_encoder.pretrained=null",
        "model.vocabulary.text_encoder.cache_dir=null", "model.vocabulary.templates=single",
        "model.aggregator.prompt_channels=1", "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0"]),
}


def _cmd(config, opts, out, *extra):
    return [sys.executable, "train_net.py", "--config-file", config, *extra, *COMMON, *opts,
            f'train.output_dir="{out}"']


def _weights(out):
    return torch.load(os.path.join(out, "model_final.pth"), map_location="cpu",
                      weights_only=True)["model"]


# one trainer in the default suite (about 25 s); all five with `make test-all` (F-ViT, whose two
# loader workers take it to about 100 s, among them). That batches do not depend on the workers
# and that a loader resumes at its batch: tests/data/test_resumable_loader.py
DEFAULT = ("clipself_patches",)


@pytest.mark.parametrize("name", [
    name if name in DEFAULT else pytest.param(name, marks=pytest.mark.slow)
    for name in sorted(CASES)
])
def test_kill_and_resume_equals_an_uninterrupted_run(name, tiny_world, tmp_path):
    config, opts = CASES[name]
    env = dict(os.environ, DETECTRON2_DATASETS=tiny_world, OMP_NUM_THREADS="1")
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    proc = subprocess.run(_cmd(config, opts, full), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    child = subprocess.Popen(_cmd(config, opts, cut), cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # SIGKILL as soon as the checkpoint of iteration 4 (index 3) is on disk
        deadline = time.time() + 600
        while not os.path.exists(os.path.join(cut, "model_0000003.pth")):
            assert child.poll() is None and time.time() < deadline, "run ended before the kill"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(cut, "model_final.pth")), "killed too late"

    proc = subprocess.run(_cmd(config, opts, cut, "--resume"), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "Resuming the data stream at batch" in log
    a, b = _weights(full), _weights(cut)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} of {len(a)} tensors differ, e.g. {different[:3]}"
