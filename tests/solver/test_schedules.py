import math
import os

import pytest
from detectron2.config import instantiate

_ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
_SCHEDULES = os.path.join(_ROOT, "configs", "common", "schedules.py")


def _module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("schedules", _SCHEDULES)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_warmup_cosine_matches_clipself_formula():
    max_iter, warmup = 1000, 100
    sched = instantiate(_module().warmup_cosine(max_iter=max_iter, warmup_iters=warmup))
    # after warm-up: cosine from 1 to 0 over the remaining steps (docs/distillation.md §6)
    for step in (100, 300, 550, 999):
        e, es = step - warmup, max_iter - warmup
        expected = 0.5 * (1 + math.cos(math.pi * e / es))
        assert sched(step / max_iter) == pytest.approx(expected, abs=1e-6)
    # warm-up: linear from warmup_factor to 1
    assert sched(0.0) == pytest.approx(0.001, abs=1e-6)
    assert sched(50 / max_iter) == pytest.approx(0.001 + 0.999 * 0.5, rel=1e-3)


def test_warmup_multistep():
    sched = instantiate(
        _module().warmup_multistep(max_iter=48, milestones=[32, 44], warmup_iters=4)
    )
    assert sched(10 / 48) == pytest.approx(1.0)
    assert sched(33 / 48) == pytest.approx(0.1)
    assert sched(45 / 48) == pytest.approx(0.01)
