#!/usr/bin/env python
"""Benchmarks that print one JSON line each.

``dense``: CLIPSelf dense features (``CLIPTower(...).dense_features``, any open_clip tower:
EVA02, OpenAI / OpenCLIP, SigLIP / SigLIP2, PE-Core, CoCa, CNNs) plus box pooling, random
weights::

    python tools/benchmark.py dense --model EVA02-B-16 --size 1024 --dtype bf16 --reference
    python tools/benchmark.py dense --model ViT-B-16-SigLIP2 --size 1024 --dtype fp32

``step``: one CLIPSelf training step (teacher crops, student dense map + RoI pooling, backward,
AdamW), fp32 / bf16 / fp16, with its phases, FLOPs and the fraction of the matmul peak::

    python tools/benchmark.py step --model ViT-B-16 --size 512 --boxes 8 --crop 224 --dtype bf16

``peak``: the machine's measured matmul throughput per dtype (the denominator of ``step``)::

    python tools/benchmark.py peak --dtype fp32 bf16

``all``: every figure of the README's performance tables, each in its own process (clean peak
memory), one JSON line per figure appended to ``--output``; on a GPU in a few minutes::

    python tools/benchmark.py all --device cuda --output benchmark_cuda.jsonl

With ``--reference`` the same input is also run through a plain reference implementation
(materialised softmax attention in every block, a Python loop over regions for pooling) and the
speed-ups are reported. Peak memory: the process's max RSS on the CPU (cumulative: the reference
figure includes the main run), ``torch.cuda.max_memory_allocated`` on a GPU.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from typing import List, Optional

import torch

from clipself.engine.benchmark import (
    build_step_model,
    fraction_of_peak,
    matmul_peak,
    mean_seconds,
    peak_memory_mb,
    synthetic_distill_batch,
    time_step,
)
from clipself.modeling import CLIPTower
from clipself.modeling.dense_ops import pool_boxes, pool_boxes_reference


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
    sec = mean_seconds(lambda: model.dense_features(x), args.repeats, args.warmup, device)
    pool_sec = mean_seconds(lambda: pool_boxes(dense, boxes, model.stride), 3, 1, device)
    result = {
        "bench": "dense",
        "model": model.model_name,
        "family": model.tower.family,
        "size": args.size,
        "batch": args.batch,
        "dtype": args.dtype,
        "device": _device_name(device),
        "threads": torch.get_num_threads(),
        "last_block_mode": args.mode,
        "grid": list(dense.shape[-2:]),
        "images_per_s": round(args.batch / sec, 4),
        "seconds_per_image": round(sec / args.batch, 4),
        "peak_mem_mb": round(peak_memory_mb(device), 1),
        "pool_boxes": args.boxes * args.batch,
        "pool_seconds": round(pool_sec, 6),
    }
    if args.reference:
        model.attn_impl = "math"
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        ref_dense = model.dense_features(x)
        ref_sec = mean_seconds(lambda: model.dense_features(x), args.repeats, 0, device)
        ref_pool = mean_seconds(
            lambda: pool_boxes_reference(dense, boxes, model.stride), 1, 0, device)
        model.attn_impl = "sdpa"
        diff = (ref_dense - dense).abs().max().item()
        result["reference"] = {
            "seconds_per_image": round(ref_sec / args.batch, 4),
            "peak_mem_mb": round(peak_memory_mb(device), 1),
            "pool_seconds": round(ref_pool, 6),
            "max_abs_diff": diff,
        }
        result["speedup"] = round(ref_sec / sec, 2)
        result["pool_speedup"] = round(ref_pool / pool_sec, 1)
    return result


def _device_name(device: torch.device) -> str:
    return str(device) if device.type != "cuda" else torch.cuda.get_device_name(device)


def bench_step(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = synthetic_distill_batch(args.batch, args.size, args.boxes, args.crop)
    if args.cache and args.source != "proposals":
        raise SystemExit("--cache is for --source proposals (grid cells rarely repeat)")
    model = build_step_model(args.model, device=args.device,
                             grad_checkpointing=args.grad_checkpointing,
                             teacher_cache=args.cache)
    compile_sec = None
    if args.compile:
        model.compile()
        t0 = time.perf_counter()
        time_step(model, batch, dtype=args.dtype, steps=1, warmup=0, count_flops=False)
        compile_sec = round(time.perf_counter() - t0, 1)  # the first step compiles
    res = time_step(model, batch, dtype=args.dtype, steps=args.repeats, warmup=args.warmup,
                    count_flops=not args.no_flops)
    peak = matmul_peak(args.dtype, args.device, seconds=args.peak_seconds)
    result = {
        "bench": "step",
        "model": args.model,
        "family": model.student.tower.family,
        "source": args.source,
        "teacher_cache": args.cache,
        "size": args.size,
        "batch": args.batch,
        "boxes_per_image": args.boxes,
        "crop": args.crop,
        "dtype": args.dtype,
        "grad_checkpointing": args.grad_checkpointing,
        "compile": args.compile,
        "first_step_seconds_with_compile": compile_sec,
        "device": _device_name(device),
        "threads": torch.get_num_threads(),
        "seconds_per_step": round(res["seconds_per_step"], 4),
        "phases": res["phases"],
        "peak_mem_mb": res["peak_mem_mb"],
        "tflop_per_step": None if res["flops"] is None else round(res["flops"] / 1e12, 4),
        "matmul_peak_gflops": peak["gflops"],
        "fraction_of_peak": fraction_of_peak(res["flops"], res["seconds_per_step"],
                                             peak["gflops"]),
        "losses": [round(x, 6) for x in res["losses"]],
    }
    if args.reference:
        del model
        ref = build_step_model(args.model, device=args.device, attn_impl="math")
        r = time_step(ref, batch, dtype="fp32", steps=args.repeats, warmup=args.warmup,
                      count_flops=False)
        result["reference"] = {
            "what": "fp32, materialised attention (attn_impl='math'), no teacher cache",
            "seconds_per_step": round(r["seconds_per_step"], 4),
            "phases": r["phases"],
            "losses": [round(x, 6) for x in r["losses"]],
        }
        result["speedup"] = round(r["seconds_per_step"] / res["seconds_per_step"], 2)
    return result


def bench_peak(args: argparse.Namespace) -> List[dict]:
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for dtype in args.dtype:
        row = matmul_peak(dtype, args.device, n=args.n, seconds=args.seconds)
        row.update(bench="peak", device=_device_name(torch.device(args.device)),
                   threads=torch.get_num_threads())
        rows.append(row)
    return rows


#: group -> argument lists of the README's figures (B/16 step: 1 image at 512 px, 8 regions,
#: 224 px crops; dense maps at 1024 px; memory: the paper's training shapes with 20 regions, 1 and
#: 2 images)
STEP = ["--size", "512", "--boxes", "8", "--crop", "224"]
FIGURES = {
    "peak": [["peak", "--dtype", "fp32", "bf16"]],
    "step": [
        ["step", "--model", m, *STEP, *extra]
        for m in ("ViT-B-16", "EVA02-B-16")
        for extra in (["--dtype", "fp32", "--reference"],
                      ["--dtype", "bf16"],
                      ["--dtype", "fp32", "--source", "proposals", "--cache"],
                      ["--dtype", "bf16", "--source", "proposals", "--cache"])
    ],
    "dense": [
        ["dense", "--model", m, "--size", "1024", "--dtype", d] + (["--reference"] if ref else [])
        for m, ref in (("ViT-B-16", True), ("EVA02-B-16", True), ("ViT-B-16-SigLIP2", False),
                       ("PE-Core-B-16", False))
        for d in ("fp32", "bf16")
    ],
    "memory": [
        ["step", "--model", m, "--size", size, "--boxes", "20", "--crop", crop, "--dtype", d,
         "--batch", b, "--repeats", "1", "--warmup", "0", "--no-flops"] + ckpt
        for m, size, crop in (("EVA02-B-16", "1024", "224"), ("EVA02-L-14-336", "896", "336"))
        for d in ("fp32", "bf16")
        for ckpt in ([], ["--grad-checkpointing"])
        for b in ("1", "2")
    ],
}


def bench_all(args: argparse.Namespace) -> int:
    groups = args.only or list(FIGURES)
    failed = 0
    for group in groups:
        for argv in FIGURES[group]:
            cmd = [sys.executable, os.path.abspath(__file__), *argv, "--device", args.device]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            print(f"# {group}: {' '.join(argv)}", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                failed += 1
                print(f"# failed ({proc.returncode}): {proc.stderr[-2000:]}", file=sys.stderr)
                continue
            with open(args.output, "a") as f:
                for ln in lines:
                    row = dict(json.loads(ln), group=group)
                    f.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)
    return 1 if failed else 0


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

    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    st = sub.add_parser("step", help="one CLIPSelf training step, phases, FLOPs, peak fraction")
    st.add_argument("--model", default="EVA02-B-16", help="open_clip config name or .json file")
    st.add_argument("--source", choices=["patches", "proposals"], default="patches")
    st.add_argument("--cache", action="store_true",
                    help="teacher cache, warm (the steady state of epochs >= 2; proposals)")
    st.add_argument("--size", type=int, default=512, help="student input side in pixels")
    st.add_argument("--batch", type=int, default=1, help="images per step")
    st.add_argument("--boxes", type=int, default=8, help="regions (= teacher crops) per image")
    st.add_argument("--crop", type=int, default=224, help="teacher crop side")
    st.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    st.add_argument("--grad-checkpointing", action="store_true")
    st.add_argument("--compile", action="store_true", help="torch.compile the model first")
    st.add_argument("--device", default=default_device)
    st.add_argument("--repeats", type=int, default=2)
    st.add_argument("--warmup", type=int, default=1)
    st.add_argument("--threads", type=int, default=0)
    st.add_argument("--no-flops", action="store_true", help="skip the FLOP-counting pass")
    st.add_argument("--peak-seconds", type=float, default=2.0)
    st.add_argument("--reference", action="store_true",
                    help="also time the fp32 materialised-attention step")
    pk = sub.add_parser("peak", help="measured matmul throughput per dtype")
    pk.add_argument("--dtype", nargs="+", choices=["fp32", "bf16", "fp16"],
                    default=["fp32", "bf16"])
    pk.add_argument("--device", default=default_device)
    pk.add_argument("--n", type=int, default=2048)
    pk.add_argument("--seconds", type=float, default=2.0)
    pk.add_argument("--threads", type=int, default=0)
    al = sub.add_parser("all", help="every README figure, one process each")
    al.add_argument("--device", default=default_device)
    al.add_argument("--only", nargs="+", choices=sorted(FIGURES), help="some groups only")
    al.add_argument("--output", default="benchmark.jsonl", help="JSON lines appended here")
    al.add_argument("--threads", type=int, default=0)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "dense":
        print(json.dumps(bench_dense(args)), flush=True)
    elif args.command == "step":
        print(json.dumps(bench_step(args)), flush=True)
    elif args.command == "peak":
        for row in bench_peak(args):
            print(json.dumps(row), flush=True)
    elif args.command == "all":
        return bench_all(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
