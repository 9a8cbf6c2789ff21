"""train_net.py end to end on a tiny synthetic world: train, eval-only, resume, 2 processes."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/Synthetic/faster_rcnn_R18_FPN_base.py"
TINY = [
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
    "model.roi_heads.batch_size_per_image=32",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from clipself.data.datasets.synthetic import prepare_world

    root = str(tmp_path_factory.mktemp("datasets"))
    prepare_world(root, num_train=6, num_val=3, seed=0)
    return root


def _run(world, *args, check=True):
    env = dict(os.environ, DETECTRON2_DATASETS=world, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "train_net.py", "--config-file", CONFIG, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"train_net.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def _iterations(output_dir):
    """Iterations that trained (rows with losses) in metrics.json."""
    with open(os.path.join(output_dir, "metrics.json")) as f:
        rows = [json.loads(line) for line in f]
    return [r["iteration"] for r in rows if "total_loss" in r]


def test_train_then_eval_only_then_resume(world, tmp_path):
    out = str(tmp_path / "run")
    common = [*TINY, f'train.output_dir="{out}"', "train.log_period=1"]
    _run(world, *common, "train.max_iter=2", "train.eval_period=2",
         "train.checkpointer.period=1")
    assert os.path.exists(os.path.join(out, "model_final.pth"))
    assert os.path.exists(os.path.join(out, "config.yaml"))
    assert _iterations(out) == [0, 1]

    proc = _run(world, "--eval-only", *common, f'train.init_checkpoint="{out}/model_final.pth"')
    assert "copypaste: AP,AP50,AP75" in proc.stdout + proc.stderr

    # resume continues at iteration 2 (the checkpoint after iteration 1), not from 0
    proc = _run(world, "--resume", *common, "train.max_iter=3", "train.eval_period=0")
    log = proc.stdout + proc.stderr
    assert "model_final.pth" in log and "Starting training from iteration 2" in log
    assert _iterations(out) == [0, 1, 2]


def test_unknown_key_is_rejected(world, tmp_path):
    proc = _run(world, "train.max_iters=2", check=False)
    assert proc.returncode != 0
    assert "Override key 'train.max_iters' does not exist" in proc.stderr
    assert "Did you mean: train.max_iter" in proc.stderr


def test_two_processes_over_gloo(world, tmp_path):
    out = str(tmp_path / "ddp")
    proc = _run(world, "--num-gpus", "2", "--dist-url", "auto", *TINY,
                f'train.output_dir="{out}"', "train.max_iter=2", "train.eval_period=0",
                "dataloader.train.total_batch_size=2")
    assert "World size: 2" in proc.stdout + proc.stderr
    # rank 1 logs to its own file (Detectron2's setup_logger)
    with open(os.path.join(out, "log.txt.rank1")) as f:
        assert "Rank of current process: 1. World size: 2" in f.read()
    assert os.path.exists(os.path.join(out, "model_final.pth"))


def test_one_and_two_processes_average_the_same_gradient(world, tmp_path):
    """The global batch and each image's regions and augmentation do not depend on the number
    of processes; with one region per image every process's loss has the same weight, so DDP's
    average over 2 processes is the 1-process gradient."""
    env = dict(os.environ, DETECTRON2_DATASETS=world, OMP_NUM_THREADS="1")
    opts = ["model.student.pretrained=null", "dataloader.train.total_batch_size=2",
            "dataloader.train.num_workers=0", "dataloader.train.mapper.max_boxes=1"]
    grads = []
    for n in (1, 2):
        out = str(tmp_path / f"grad{n}.pt")
        proc = subprocess.run([sys.executable, "-m", "tests.dist_gradient", out, str(n), *opts],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        grads.append(torch.load(out, weights_only=True))
    one, two = grads
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["grads"].keys() == two["grads"].keys() and len(one["grads"]) > 10
    worst = max((one["grads"][k] - two["grads"][k]).abs().max().item() for k in one["grads"])
    assert worst < 1e-5, worst
    assert max(g.abs().max().item() for g in one["grads"].values()) > 1e-3  # not all zero


@pytest.mark.slow  # four trainings; the two-process path is in the default suite
def test_two_machines_equal_one_machine_with_two_processes(world, tmp_path):
    """``--num-machines 2`` (one process each, TCP rendezvous on this machine) trains and
    evaluates to the same weights and metrics as ``--num-gpus 2`` on one machine."""
    common = [*TINY, "train.max_iter=3", "train.eval_period=3",
              "dataloader.train.total_batch_size=2"]
    one = str(tmp_path / "one")
    _run(world, "--num-gpus", "2", "--dist-url", "auto", *common, f'train.output_dir="{one}"')
    two = str(tmp_path / "two")
    port = _free_port()
    env = dict(os.environ, DETECTRON2_DATASETS=world, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(
        [sys.executable, "train_net.py", "--config-file", CONFIG, "--num-gpus", "1",
         "--num-machines", "2", "--machine-rank", str(rank),
         "--dist-url", f"tcp://127.0.0.1:{port}", *common, f'train.output_dir="{two}"'],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    a = torch.load(os.path.join(one, "model_final.pth"), weights_only=True)["model"]
    b = torch.load(os.path.join(two, "model_final.pth"), weights_only=True)["model"]
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    ra, rb = (json.load(open(os.path.join(d, "eval_results.json")))["results"] for d in (one, two))
    assert ra == rb and "bbox" in ra


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
