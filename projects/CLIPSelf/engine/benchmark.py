"""Measurements behind ``tools/benchmark.py`` (docs/performance.md): the machine's matmul peak
per dtype, and one CLIPSelf training step with its phases, peak memory, FLOP count and the
fraction of the peak it reaches.

A step is what ``train_net.py`` runs per iteration (``clipself.engine.Trainer``): the
:class:`~clipself.distill.CLIPSelf` forward under ``torch.autocast`` when a low-precision dtype
is asked for (the teacher embeds the crops without gradients, the student's dense map is
RoI-pooled and compared with them), the backward pass (with a ``GradScaler`` for fp16) and an
AdamW step. Phases are timed by wrapping the teacher's ``encode_image``: "teacher" is its time,
"student_forward" the rest of the forward.
"""
import contextlib
import resource
import time
from typing import Callable, Dict, List, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..distill import CLIPSelf, TeacherCache
from ..modeling import CLIPTower
from ..solver import adamw, build_param_groups

__all__ = [
    "DTYPES",
    "sync",
    "peak_memory_mb",
    "mean_seconds",
    "matmul_peak",
    "synthetic_distill_batch",
    "build_step_model",
    "time_step",
    "fraction_of_peak",
    "images_that_fit",
]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    """``torch.cuda.max_memory_allocated`` on a GPU; the process's max RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def mean_seconds(fn: Callable[[], object], repeats: int, warmup: int, device: torch.device
                 ) -> float:
    """Mean seconds per call of ``fn`` after ``warmup`` untimed calls (synchronised on CUDA)."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / max(repeats, 1)


def matmul_peak(dtype: str = "fp32", device: str = "cpu", n: int = 2048, seconds: float = 2.0
                ) -> Dict[str, float]:
    """Measured matmul throughput: ``(n, n) @ (n, n)`` repeated for about ``seconds``.

    Returns:
        dict: ``{"dtype", "n", "gflops"}`` (2 n^3 FLOPs per product).
    """
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev, dtype=DTYPES[dtype])
    b = torch.randn(n, n, device=dev, dtype=DTYPES[dtype])
    a @ b  # warm-up
    sync(dev)
    reps, t0 = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        sync(dev)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
    return {"dtype": dtype, "n": n, "gflops": round(2 * n**3 * reps / elapsed / 1e9, 1)}


def synthetic_distill_batch(
    images: int, image_size: int, boxes: int, crop_size: int, seed: int = 0
) -> List[Dict[str, torch.Tensor]]:
    """Records in the format of ``CLIPSelfMapper`` (uint8 image, xyxy boxes, uint8 crops) with
    random pixels and boxes."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(images):
        xy = torch.rand(boxes, 2, generator=g) * image_size * 0.7
        wh = (torch.rand(boxes, 2, generator=g) * 0.25 + 0.05) * image_size
        out.append({
            "image": torch.randint(0, 256, (3, image_size, image_size), generator=g,
                                   dtype=torch.uint8),
            "boxes": torch.cat([xy, (xy + wh).clamp(max=image_size)], dim=1),
            "crops": torch.randint(0, 256, (boxes, 3, crop_size, crop_size), generator=g,
                                   dtype=torch.uint8),
            "image_id": i,
            "file_name": f"synthetic_{i}.png",
        })
        out[-1]["crop_boxes"] = out[-1]["boxes"].clone()  # the teacher cache's key
    return out


def build_step_model(model_name: str, device: str = "cpu", attn_impl: str = "sdpa",
                     grad_checkpointing: bool = False, seed: int = 0,
                     teacher_cache: bool = False) -> CLIPSelf:
    """CLIPSelf with a random-weight student (freeze="clipself") and its frozen teacher copy;
    ``teacher_cache``: with an in-memory :class:`TeacherCache` (warm after the first step)."""
    torch.manual_seed(seed)
    options = {"attn_impl": attn_impl}
    if grad_checkpointing:
        options["grad_checkpointing"] = True
    student = CLIPTower(model_name, pretrained=None, freeze="clipself", **options)
    teacher = CLIPTower(model_name, pretrained=None, freeze="all", attn_impl=attn_impl)
    teacher.load_state_dict(student.state_dict())
    cache = TeacherCache() if teacher_cache else None
    return CLIPSelf(student=student, teacher=teacher, alpha=1.0,
                    teacher_cache=cache).to(device).train()


@contextlib.contextmanager
def _timed_method(obj, name: str, totals: Dict[str, float], key: str, device: torch.device):
    """Accumulate the wall time of ``obj.name(...)`` calls into ``totals[key]``."""
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        sync(device)
        t0 = time.perf_counter()
        out = original(*args, **kwargs)
        sync(device)
        totals[key] += time.perf_counter() - t0
        return out

    setattr(obj, name, wrapper)
    try:
        yield
    finally:
        delattr(obj, name)  # back to the class's method


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The training configs' AdamW (fused kernels on CUDA)."""
    return adamw(build_param_groups(model, weight_decay=0.1), lr=1e-5, weight_decay=0.1)


def time_step(
    model: CLIPSelf,
    batch: List[Dict[str, torch.Tensor]],
    dtype: str = "fp32",
    steps: int = 2,
    warmup: int = 1,
    count_flops: bool = True,
    optimizer: Optional[torch.optim.Optimizer] = None,
) -> Dict[str, object]:
    """Time ``steps`` CLIPSelf training steps after ``warmup`` untimed ones.

    Returns:
        dict: ``seconds_per_step``, ``phases`` (mean seconds of teacher, student_forward,
        backward, optimizer), ``losses`` (of the timed steps), ``flops`` (of one step, forward
        and backward, from ``torch.utils.flop_counter``) and ``peak_mem_mb``.
    """
    device = model.device
    opt = optimizer or _optimizer(model)
    amp = dtype != "fp32"
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == "fp16")

    def autocast():
        if not amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])

    def one(totals: Dict[str, float]) -> float:
        sync(device)
        t0 = time.perf_counter()
        with _timed_method(model.teacher, "encode_image", totals, "teacher", device):
            with autocast():
                loss = sum(model(batch).values())
        sync(device)
        t1 = time.perf_counter()
        scaler.scale(loss).backward()
        sync(device)
        t2 = time.perf_counter()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        sync(device)
        t3 = time.perf_counter()
        totals["forward"] += t1 - t0
        totals["backward"] += t2 - t1
        totals["optimizer"] += t3 - t2
        return float(loss.detach())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        one({"teacher": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0})
    totals = {"teacher": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    sync(device)
    t0 = time.perf_counter()
    losses = [one(totals) for _ in range(steps)]
    sync(device)
    per_step = (time.perf_counter() - t0) / max(steps, 1)
    peak = peak_memory_mb(device)
    flops = None
    if count_flops:
        counter = FlopCounterMode(display=False)
        with counter:
            with autocast():
                loss = sum(model(batch).values())
            loss.backward()
        opt.zero_grad(set_to_none=True)
        flops = int(counter.get_total_flops())
    n = max(steps, 1)
    phases = {
        "teacher": totals["teacher"] / n,
        "student_forward": (totals["forward"] - totals["teacher"]) / n,
        "backward": totals["backward"] / n,
        "optimizer": totals["optimizer"] / n,
    }
    return {
        "seconds_per_step": per_step,
        "phases": {k: round(v, 4) for k, v in phases.items()},
        "losses": losses,
        "flops": flops,
        "peak_mem_mb": round(peak, 1),
    }


def fraction_of_peak(flops: Optional[int], seconds: float, gflops: float) -> Optional[float]:
    """Achieved FLOP/s over the measured matmul peak."""
    if not flops or seconds <= 0 or gflops <= 0:
        return None
    return round(flops / seconds / (gflops * 1e9), 3)


def images_that_fit(peak_one_mb: float, peak_two_mb: float, card_gb: float) -> int:
    """Images per device that fit in ``card_gb`` from the peak memory of 1- and 2-image steps.

    ``per_image = peak_two - peak_one`` (activations and crops of one more image), ``fixed =
    peak_one - per_image`` (weights, optimizer state, workspace); ``floor((card - fixed) /
    per_image)``, at least 0. An estimate: CPU RSS includes the process, not the CUDA caching
    allocator's fragmentation.
    """
    per_image = peak_two_mb - peak_one_mb
    if per_image <= 0:
        raise ValueError(f"2-image peak {peak_two_mb} MB is not above the 1-image {peak_one_mb} MB")
    fixed = peak_one_mb - per_image
    return max(0, int((card_gb * 1024 - fixed) // per_image))
