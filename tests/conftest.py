"""Fixtures shared by the end-to-end ``train_net.py`` tests."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A generated synthetic world (8 train / 3 val scenes) as a DETECTRON2_DATASETS root."""
    from clipself.data.datasets.synthetic import prepare_world

    root = str(tmp_path_factory.mktemp("tiny_world"))
    prepare_world(root, num_train=8, num_val=3, seed=0)
    return root


@pytest.fixture
def train_net_process(tiny_world):
    """``train_net_process(config, *args) -> CompletedProcess``: train_net.py on ``tiny_world``,
    one thread, output captured, whatever its exit status."""

    def run(config, *args):
        env = dict(os.environ, DETECTRON2_DATASETS=tiny_world, OMP_NUM_THREADS="1")
        return subprocess.run(
            [sys.executable, "train_net.py", "--config-file", config, *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )

    return run


@pytest.fixture
def run_train_net(train_net_process):
    """``run_train_net(config, *args) -> log``: train_net.py on ``tiny_world``, one thread;
    fails the test (with the log tail) on a non-zero exit."""

    def run(config, *args):
        proc = train_net_process(config, *args)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return proc.stdout + proc.stderr

    return run
