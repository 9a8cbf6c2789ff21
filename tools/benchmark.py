#!/usr/bin/env python
"""Benchmarks that print one JSON line each.

``dense``: CLIPSelf dense features (``CLIPTower(...).dense_features``, any open_clip tower:
EVA02, OpenAI / OpenCLIP, SigLIP / SigLIP2, PE-Core, CoCa, CNNs) plus box pooling, random
weights::

    python tools/benchmark.py dense --model EVA02-B-16 --size 1024 --dtype bf16 --reference
    python tools/benchmark.py dense --model ViT-B-16-SigLIP2 --size 1024 --dtype fp32

With ``--reference`` the same input is also run through a plain reference implementation
(materialised softmax attention in every block, a Python loop over regions for pooling) and the
speed-ups are reported. Peak memory: the process's max RSS on the CPU (cumulative: the reference
figure includes the main run), ``torch.cuda.max_memory_allocated`` on a GPU.
"""
import argparse
import json
import resource
import sys
import time
from typing import Callable, List, Optional

import torch

from clipself.modeling import CLIPTower
from clipself.modeling.dense_ops import pool_boxes, pool_boxes_reference


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _time(fn: Callable[[], object], repeats: int, warmup: int, device: torch.device) -> float:
    """Mean seconds per call after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / max(repeats, 1)


def _random_boxes(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * size * 0.8
    wh = (torch.rand(n, 2, generator=generator) * 0.5 + 0.05) * size
    return torch.cat([xy, (xy + wh).clamp(max=size)], dim=1)


def bench_dense(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = None if args.dtype == "fp32" else args.dtype
    torch.manual_seed(0)
    model = CLIPTower(
        args.model, pretrained=None, freeze="frozen", autocast_dtype=dtype,
        last_block_mode=args.mode,
    ).to(device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    gen = torch.Generator().manual_seed(0)
    boxes = [_random_boxes(args.boxes, args.size, gen).to(device) for _ in range(args.batch)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    dense = model.dense_features(x)  # also a warm-up for the caches
    sec = _time(lambda: model.dense_features(x), args.repeats, args.warmup, device)
    pool_sec = _time(lambda: pool_boxes(dense, boxes, model.stride), 3, 1, device)
    result = {
        "bench": "dense",
        "model": model.model_name,
        "family": model.tower.family,
        "size": args.size,
        "batch": args.batch,
        "dtype": args.dtype,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "last_block_mode": args.mode,
        "grid": list(dense.shape[-2:]),
        "images_per_s": round(args.batch / sec, 4),
        "seconds_per_image": round(sec / args.batch, 4),
        "peak_mem_mb": round(_peak_mb(device), 1),
        "pool_boxes": args.boxes * args.batch,
        "pool_seconds": round(pool_sec, 6),
    }
    if args.reference:
        model.attn_impl = "math"
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        ref_dense = model.dense_features(x)
        ref_sec = _time(lambda: model.dense_features(x), args.repeats, 0, device)
        ref_pool = _time(lambda: pool_boxes_reference(dense, boxes, model.stride), 1, 0, device)
        model.attn_impl = "sdpa"
        diff = (ref_dense - dense).abs().max().item()
        result["reference"] = {
            "seconds_per_image": round(ref_sec / args.batch, 4),
            "peak_mem_mb": round(_peak_mb(device), 1),
            "pool_seconds": round(ref_pool, 6),
            "max_abs_diff": diff,
        }
        result["speedup"] = round(ref_sec / sec, 2)
        result["pool_speedup"] = round(ref_pool / pool_sec, 1)
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dense", help="CLIPTower.dense_features + pool_boxes throughput")
    d.add_argument("--model", default="EVA02-B-16", help="open_clip config name or .json file")
    d.add_argument("--size", type=int, default=1024, help="square input side in pixels")
    d.add_argument("--batch", type=int, default=1)
    d.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    d.add_argument("--mode", default="v", help="last_block_mode")
    d.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    d.add_argument("--repeats", type=int, default=2)
    d.add_argument("--warmup", type=int, default=1)
    d.add_argument("--boxes", type=int, default=100, help="boxes per image for pooling")
    d.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    d.add_argument("--reference", action="store_true",
                   help="also time the materialised-attention / per-region-loop reference")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "dense":
        print(json.dumps(bench_dense(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
