"""The step benchmark's measurement code on a tiny tower: phases add up, FLOPs are counted, the
reference (materialised attention) computes the same losses, bf16 runs."""
import pytest
import torch

from clipself.engine.benchmark import (
    build_step_model,
    fraction_of_peak,
    images_that_fit,
    matmul_peak,
    mean_seconds,
    synthetic_distill_batch,
    time_step,
)

from tests.modeling.tiny_towers import TINY


@pytest.mark.parametrize("family", ["openai", "siglip", "rn"])
def test_time_step_phases_flops_and_reference(family):
    batch = synthetic_distill_batch(2, 64, 3, 32)
    model = build_step_model(TINY[family])
    res = time_step(model, batch, steps=2, warmup=1)
    phases = res["phases"]
    assert set(phases) == {"teacher", "student_forward", "backward", "optimizer"}
    assert all(v >= 0 for v in phases.values()) and phases["teacher"] > 0
    assert sum(phases.values()) <= res["seconds_per_step"] * 1.05 + 1e-3
    assert res["flops"] > 0 and len(res["losses"]) == 2
    assert res["losses"][1] != res["losses"][0]  # the optimizer moved the student
    ref = time_step(build_step_model(TINY[family], attn_impl="math"), batch, steps=2, warmup=1,
                    count_flops=False)
    assert ref["losses"] == pytest.approx(res["losses"], abs=1e-5)


def test_bf16_step_and_peak():
    batch = synthetic_distill_batch(1, 64, 2, 32)
    res = time_step(build_step_model(TINY["eva02"]), batch, dtype="bf16", steps=1, warmup=0)
    assert torch.isfinite(torch.tensor(res["losses"])).all()
    peak = matmul_peak("fp32", n=128, seconds=0.05)
    assert peak["gflops"] > 0
    assert fraction_of_peak(2 * 10**9, 1.0, 4.0) == 0.5 and fraction_of_peak(None, 1.0, 4.0) is None


def test_images_that_fit():
    # 4 GB fixed + 3 GB per image: 24 GB fits 6 images, 80 GB fits 25
    assert images_that_fit(7 * 1024, 10 * 1024, 24) == 6
    assert images_that_fit(7 * 1024, 10 * 1024, 80) == 25
    assert images_that_fit(7 * 1024, 10 * 1024, 3) == 0
    with pytest.raises(ValueError, match="not above"):
        images_that_fit(10.0, 10.0, 24)


def test_mean_seconds_runs_warmup_then_repeats():
    calls = []
    sec = mean_seconds(lambda: calls.append(1), repeats=3, warmup=2, device=torch.device("cpu"))
    assert len(calls) == 5 and sec >= 0
