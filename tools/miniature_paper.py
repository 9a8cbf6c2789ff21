#!/usr/bin/env python
"""The miniature paper: the CLIPSelf pipeline on the synthetic world, on a laptop CPU.

``make demo`` runs this script. Stages (each prints its progress and wall time):

1. world      generate the synthetic world (images, COCO instances, panoptic, captions)
2. toy_clip   train the toy CLIP contrastively on scenes and object crops (``--region-crops N``:
              also captioned region crops; docs/miniature.md §1-§2; cached by settings), then
              measure it on each distillation mode's regions (docs/miniature.md §3)
3. before     region recognition of the toy CLIP: dense boxes / thing masks / stuff masks vs
              image crops (paper Table 2 protocol) through ``train_net.py --eval-only``
4. clipself   CLIPSelf distillation with image patches through ``train_net.py``, evaluated after
5. proposals  CLIPSelf distillation with region proposals (class-agnostic object boxes), with
              the schedule of the patches run (``clipself.engine.miniature.SIZES``)
   mixed      (not in the paper) proposals + grid cells in the same image
6. alpha      weight ensembling alpha * student + (1 - alpha) * teacher of both runs
              (docs/distillation.md §7), evaluated with ``train_net.py --eval-only``
7. pictures   K-Means maps of the dense features before / after (paper Figure 4)

Results: ``OUTPUT/REPORT.md`` and ``OUTPUT/metrics.json``. In ``metrics.json``,
``region_recognition`` holds ``before``, ``after`` (the proposals run: the CLIPSelf model the demo
reports and whose tower F-ViT uses; ``after_source`` says so), ``after_patches``, ``after_mixed``
and the ``alpha`` ensembles.

Usage::

    python tools/miniature_paper.py --output output/demo [--quick] [--seed N] [--region-crops N]
"""
import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import torch

from clipself.data.datasets.synthetic import prepare_world
from clipself.distill import export_distilled
from clipself.engine.miniature import SIZES, distill_schedule, toy_clip_settings, with_region_crops
from clipself.engine.runner import TrainNetJob, run_jobs
from clipself.engine.teacher_regions import analyze_teacher_regions, format_teacher_regions
from clipself.engine.toy_clip import cached_toy_clip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILL_CONFIG = "configs/Synthetic/clipself_toy_patches.py"
PROPOSALS_CONFIG = "configs/Synthetic/clipself_toy_proposals.py"
MIXED_CONFIG = "configs/Synthetic/clipself_toy_mixed.py"
FVIT_CONFIG = "configs/Synthetic/fvit_toy_clipself.py"
_RUNS = {  # region source -> (config, output folder)
    "patches": (DISTILL_CONFIG, "clipself"),
    "proposals": (PROPOSALS_CONFIG, "clipself_proposals"),
    "mixed": (MIXED_CONFIG, "clipself_mixed"),
}

#: validation scenes of the teacher's view of the distillation regions (full, quick)
TEACHER_SCENES = {False: 100, True: 2}
#: rows of the teacher table in REPORT.md
TEACHER_ROWS = ("object_crops", "tight_boxes", "grid", "grid_things", "grid_stuff")
#: keys of metrics.json "region_recognition" -> evaluator keys
REGION_KEYS = {
    "boxes_top1": "boxes_top1", "boxes_top5": "boxes_top5",
    "thing_masks_top1": "thing_masks_top1", "thing_masks_top5": "thing_masks_top5",
    "stuff_masks_top1": "stuff_masks_top1", "stuff_masks_top5": "stuff_masks_top5",
    "crops_top1": "crops_top1", "crops_top5": "crops_top5",
    "stuff_crops_top1": "stuff_crops_top1",
}


#: the stages in order; OPTIONAL_STAGES feed no later stage and may be skipped (``--skip``)
STAGES = ("world", "toy_clip", "before", "clipself", "proposals", "mixed", "alpha", "pictures",
          "fvit")
OPTIONAL_STAGES = ("mixed", "alpha", "pictures")


def _log(msg: str) -> None:
    print(f"[miniature-paper {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def stage_world(out: str, num_train: int, num_val: int, seed: int) -> str:
    """Write the synthetic world under ``out/datasets`` (skipped when already there)."""
    root = os.path.join(out, "datasets")
    meta_path = os.path.join(root, "synthetic", "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if (meta.get("seed"), meta.get("num_train"), meta.get("num_val")) == (
            seed, num_train, num_val
        ):
            _log(f"world: reusing {root}")
            return root
    prepare_world(root, num_train=num_train, num_val=num_val, seed=seed, log=_log)
    return root


def stage_toy_clip(out: str, size: dict, seed: int) -> dict:
    """Train the toy CLIP once per settings; later runs reuse the cached checkpoint."""
    return cached_toy_clip(os.path.join(out, "toy_clip"), toy_clip_settings(size, seed), log=_log)


def _train_net(name: str, args: list, out_dir: str, env: dict) -> dict:
    """Run one train_net.py job with ``env`` (its thread settings), relaying its progress; its
    evaluation results (``eval_results.json`` of ``out_dir``)."""
    job = TrainNetJob(name, list(args), output_dir=out_dir)
    return run_jobs([job], env=env, threads=None, log=_log)[name].results


def _distill_opts(out: str, out_dir: str, toy_ckpt: str, batch: int, quick: bool) -> list:
    """Overrides of a CLIPSelf run writing to ``out_dir``; the text embeddings are cached in
    ``out/text_embeddings``."""
    opts = [
        f'model.student.pretrained="{toy_ckpt}"',
        f'train.output_dir="{out_dir}"',
        f"dataloader.train.total_batch_size={batch}",
        'dataloader.evaluator.vocabulary.text_encoder.cache_dir='
        f'"{os.path.join(out, "text_embeddings")}"',
    ]
    if quick:
        opts += ["dataloader.train.num_workers=0", "dataloader.test.num_workers=0"]
    return opts


def stage_region_before(out: str, env: dict, toy_ckpt: str, size: dict, quick: bool) -> dict:
    out_dir = os.path.join(out, "region_before")
    results = _train_net("before", ["--eval-only", "--config-file", DISTILL_CONFIG,
                                    *_distill_opts(out, out_dir, toy_ckpt,
                                                   size["eval_batch"], quick)], out_dir, env)
    return results["region_recognition"]


def stage_clipself(
    out: str, env: dict, toy_ckpt: str, size: dict, quick: bool, source: str = "patches"
) -> dict:
    config, folder = _RUNS[source]
    out_dir = os.path.join(out, folder)
    shutil.rmtree(out_dir, ignore_errors=True)  # metrics.json is appended to: start clean
    iters, batch = distill_schedule(size, source)
    warmup = max(1, min(20, iters // 15))
    results = _train_net(source, [
        "--config-file", config, *_distill_opts(out, out_dir, toy_ckpt, batch, quick),
        f"train.max_iter={iters}", f"train.eval_period={iters}",
        f"train.checkpointer.period={iters}",
        f"train.log_period={max(1, min(iters // 4, max(10, iters // 30)))}",
        f"lr_multiplier.warmup_length={warmup / iters}",
    ], out_dir, env)
    losses = []
    with open(os.path.join(out_dir, "metrics.json")) as f:
        for line in f:
            row = json.loads(line)
            if "total_loss" in row:
                losses.append((row["iteration"], row["total_loss"]))
    return {
        "region_recognition": results["region_recognition"],
        "loss_first": losses[0][1] if losses else float("nan"),
        "loss_last": losses[-1][1] if losses else float("nan"),
        "loss_curve": losses,
        "checkpoint": os.path.join(out_dir, "model_final.pth"),
    }


ALPHAS = (0.7, 0.5)
QUICK_ALPHAS = (0.5,)  # --quick: one ensemble per run (each evaluation is a train_net process)


def stage_alpha(out: str, env: dict, toy_ckpt: str, size: dict, quick: bool) -> dict:
    """Evaluate the alpha-ensembles of both distillation runs (no training)."""
    res = {}
    for source, config, folder in (("patches", DISTILL_CONFIG, "clipself"),
                                   ("proposals", PROPOSALS_CONFIG, "clipself_proposals")):
        ckpt = os.path.join(out, folder, "model_final.pth")
        for alpha in QUICK_ALPHAS if quick else ALPHAS:
            name = f"{source}_alpha{alpha}"
            out_dir = os.path.join(out, "alpha_eval", name)
            results = _train_net(name, [
                "--eval-only", "--config-file", config,
                *_distill_opts(out, out_dir, toy_ckpt, size["eval_batch"], quick),
                f'train.init_checkpoint="{ckpt}"', f"model.alpha={alpha}",
            ], out_dir, env)
            res[name] = _pick(results["region_recognition"])
    return res


def stage_pictures(out: str, data_root: str, toy_ckpt: str, clipself_ckpt: str) -> dict:
    """Export the distilled student and draw K-Means maps before / after."""
    exported = os.path.join(out, "clipself", "toy_clipself.pt")
    export_distilled(clipself_ckpt, exported, model_name="ToyCLIP-ViT-P8", alpha=1.0,
                     text_from=toy_ckpt)
    spec = importlib.util.spec_from_file_location(
        "visualize_kmeans", os.path.join(ROOT, "tools", "visualize_kmeans.py"))
    vis = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vis)
    val_dir = os.path.join(data_root, "synthetic", "val")
    images = sorted(os.listdir(val_dir))[:4]
    panel = vis.kmeans_panel(
        "ToyCLIP-ViT-P8", [toy_ckpt, exported], ["toy CLIP", "toy CLIP + CLIPSelf"],
        [os.path.join(val_dir, im) for im in images], size=128, k=6, cell=192,
    )
    path = os.path.join(out, "kmeans.png")
    panel.save(path)
    return {"kmeans": path, "exported_checkpoint": exported}


#: F-ViT backbones of the miniature Table 3: name -> description. The CLIPSelf tower is the
#: proposals run: on this world it is the one whose dense boxes CLIPSelf improves (Table 2 above),
#: as in the paper, whose best F-ViT rows also use proposals.
FVIT_BACKBONES = {"original": "toy CLIP", "clipself": "toy CLIP + CLIPSelf (proposals)"}


def export_student(out: str, folder: str, toy_ckpt: str) -> str:
    """The distilled student of the CLIPSelf run in ``out/folder`` as a CLIP checkpoint."""
    path = os.path.join(out, folder, "toy_clipself.pt")
    export_distilled(os.path.join(out, folder, "model_final.pth"), path,
                     model_name="ToyCLIP-ViT-P8", alpha=1.0, text_from=toy_ckpt)
    return path


def fvit_precision(requested: str = "auto") -> str:
    """The F-ViT training precision: ``requested`` unless "auto", which picks "bf16" where the
    CPU runs bf16 natively (the toy F-ViT config's autocast) and "fp32" elsewhere (emulated bf16
    is slower than fp32). GPUs are not used by the demo."""
    if requested != "auto":
        return requested
    native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    return "bf16" if native() else "fp32"


def stage_fvit(out: str, env: dict, towers: dict, toy_ckpt: str, size: dict,
               quick: bool, precision: str = "bf16") -> dict:
    """Train F-ViT on the base shapes with each frozen tower, evaluate AP50 novel / base.

    ``precision``: "bf16" trains under bf16 autocast (the config's setting), "fp32" without.
    """
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be 'bf16' or 'fp32', got {precision!r}")
    iters = size["fvit_iters"]
    jobs = []
    for name, tower in towers.items():
        out_dir = os.path.join(out, "fvit", name)
        shutil.rmtree(out_dir, ignore_errors=True)
        jobs.append(TrainNetJob(name, [
            "--config-file", FVIT_CONFIG,
            f'model.backbone.bottom_up.clip.pretrained="{tower}"',
            f'model.roi_heads.box_predictor.vocabulary.text_encoder.pretrained="{toy_ckpt}"',
            'model.roi_heads.box_predictor.vocabulary.text_encoder.cache_dir='
            f'"{os.path.join(out, "text_embeddings")}"',
            f"dataloader.train.total_batch_size={size['fvit_batch']}",
            f"train.max_iter={iters}", f"train.eval_period={iters}",
            f"train.checkpointer.period={iters}", f"train.log_period={max(1, min(20, iters // 4))}",
            f"lr_multiplier.warmup_length={max(1, iters // 15) / iters}",
            f"lr_multiplier.scheduler.milestones=[{int(iters * 0.8)}]",
            f"lr_multiplier.scheduler.num_updates={iters}",
            *(["dataloader.train.num_workers=0", "dataloader.test.num_workers=0"]
              if quick else ["dataloader.train.num_workers=1", "dataloader.test.num_workers=0"]),
            *([] if precision == "bf16" else ["train.amp.enabled=False"]),
            f'train.output_dir="{out_dir}"',
        ], output_dir=out_dir, log_file=os.path.join(out, "fvit", f"{name}.log")))
    res = {}
    for name, job in run_jobs(jobs, env=env, threads=1, log=_log).items():
        r = job.results["bbox"]
        res[name] = {
            "ap50_novel": r["AP50_novel"], "ap50_base": r["AP50_base"],
            "ap50_all": r["AP50_all"], "ap": r["AP"],
            "checkpoint": os.path.join(out, "fvit", name, "model_final.pth"),
        }
    return res


#: IoU and containment of the class-agnostic NMS of the detection pictures (drawing only; AP
#: uses every box; docs/miniature.md §4)
DRAW_NMS_IOU, DRAW_NMS_CONTAINMENT = 0.25, 0.5
#: score threshold of the detection pictures (tools/demo.py's default)
DRAW_THRESHOLD = 0.3


def stage_detection_pictures(out: str, data_root: str, env: dict, runs: dict, toy_ckpt: str,
                             num_images: int = 3) -> str:
    """tools/demo.py with each trained F-ViT on a few validation images -> one panel, one box
    per object (class-agnostic NMS for drawing at ``DRAW_NMS_IOU`` and
    ``DRAW_NMS_CONTAINMENT``; docs/miniature.md §4).

    Args:
        runs (dict): backbone name -> (tower checkpoint, detector checkpoint).
    Returns:
        str: the panel's file name (relative to ``out``).
    """
    from PIL import Image, ImageDraw

    val_dir = os.path.join(data_root, "synthetic", "val")
    images = [os.path.join(val_dir, n) for n in sorted(os.listdir(val_dir))[:num_images]]
    rows = []
    for name, (tower, detector) in runs.items():
        pic_dir = os.path.join(out, "fvit", "pictures", name)
        cmd = [
            sys.executable, os.path.join(ROOT, "tools", "demo.py"), "--config-file", FVIT_CONFIG,
            "--input", *images, "--output", pic_dir, "--confidence-threshold",
            str(DRAW_THRESHOLD),
            "--agnostic-nms", "--nms-iou", str(DRAW_NMS_IOU),
            "--nms-containment", str(DRAW_NMS_CONTAINMENT),
            f'train.init_checkpoint="{detector}"',
            f'model.backbone.bottom_up.clip.pretrained="{tower}"',
            f'model.roi_heads.box_predictor.vocabulary.text_encoder.pretrained="{toy_ckpt}"',
            'model.roi_heads.box_predictor.vocabulary.text_encoder.cache_dir='
            f'"{os.path.join(out, "text_embeddings")}"',
        ]
        proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-4000:])
            raise RuntimeError(f"tools/demo.py failed for {name} (exit {proc.returncode})")
        stems = [os.path.splitext(os.path.basename(p))[0] for p in images]
        rows.append((FVIT_BACKBONES[name], [Image.open(os.path.join(pic_dir, f"{s}.png"))
                                            for s in stems]))
    cell = 320
    label_w = 200
    panel = Image.new("RGB", (label_w + cell * num_images, cell * len(rows)), "white")
    draw = ImageDraw.Draw(panel)
    for r, (label, pics) in enumerate(rows):
        draw.text((8, r * cell + cell // 2), label, fill="black")
        for c, pic in enumerate(pics):
            pic.thumbnail((cell - 8, cell - 8))
            panel.paste(pic, (label_w + c * cell + 4, r * cell + 4))
    path = "detections.png"
    panel.save(os.path.join(out, path))
    return path


def _ratio(a: float, b: float) -> str:
    return f"{100 * a / b:.0f}%" if b > 0 else "n/a"


def _schedule_text(size: dict, source: str) -> str:
    iters, batch = distill_schedule(size, source)
    return f"{iters} iterations x {batch} images"


def _pick(res: dict) -> dict:
    return {k: res.get(v, float("nan")) for k, v in REGION_KEYS.items()}


def write_report(out: str, m: dict) -> None:
    """``out/REPORT.md`` from the metrics of the stages that ran (skipped ones leave out their
    rows and sections)."""
    rr = m["region_recognition"]
    before, patches, proposals = rr["before"], rr["after_patches"], rr["after"]
    mixed = rr.get("after_mixed")

    def row(name, r, kind="dense"):
        if kind == "crops":
            return f"| {name} | {r['crops_top1']:.1f} | {r['crops_top5']:.1f} | - | - | - | - |"
        return (f"| {name} | {r['boxes_top1']:.1f} | {r['boxes_top5']:.1f} | "
                f"{r['thing_masks_top1']:.1f} | {r['thing_masks_top5']:.1f} | "
                f"{r['stuff_masks_top1']:.1f} | {r['stuff_masks_top5']:.1f} |")

    alpha_rows = []
    for source, r1 in (("patches", patches), ("proposals", proposals)):
        if "alpha" not in rr:
            break
        rows = [(1.0, r1)] + [(a, rr["alpha"][f"{source}_alpha{a}"]) for a in ALPHAS
                              if f"{source}_alpha{a}" in rr["alpha"]]
        alpha_rows += [
            f"| {source} | {a} | {r['boxes_top1']:.1f} | {r['thing_masks_top1']:.1f} | "
            f"{r['stuff_masks_top1']:.1f} | {r['crops_top1']:.1f} |" for a, r in rows
        ]
    w = m["world"]
    tc = m["toy_clip"]
    cs = m["clipself"]
    tc_regions = tc["settings"].get("region_crops", 0)
    mixed_loss = (f"; mixed {_schedule_text(m['sizes'], 'mixed')}, loss "
                  f"{m['clipself_mixed']['loss_first']:.3f} -> "
                  f"{m['clipself_mixed']['loss_last']:.3f}" if "clipself_mixed" in m else "")
    mixed_ratio = (f", {_ratio(mixed['boxes_top1'], before['crops_top1'])} (mixed: up to 10 "
                   "proposals + grid cells per image)" if mixed else "")
    lines = [
        "# The miniature paper: CLIPSelf on the synthetic world",
        "",
        "Produced by `make demo` (`python tools/miniature_paper.py"
        f"{' --quick' if m['quick'] else ''}`) on the CPU. Every figure was computed by this run.",
        "",
        f"- World: {w['num_train']} training / {w['num_val']} validation scenes, seed "
        f"{w['seed']}; 30 thing classes (24 base, 6 novel), 5 stuff classes.",
        f"- Toy CLIP ({tc['settings']['steps']} steps"
        + (f", {tc_regions} captioned region crops per pool scene" if tc_regions else "")
        + "): zero-shot top-1 on validation object "
        "crops (boxes x1.5, 30 classes, \"a photo of a {}.\") = "
        f"**{tc['zero_shot_top1']:.1f}%**.",
        "- CLIPSelf (student 128 px, 16 x 16 tokens; teacher crops 64 px): patches "
        f"{_schedule_text(m['sizes'], 'patches')}, loss {cs['loss_first']:.3f} -> "
        f"{cs['loss_last']:.3f}; proposals (class-agnostic object boxes, crops x1.5) "
        f"{_schedule_text(m['sizes'], 'proposals')}, loss "
        f"{m['clipself_proposals']['loss_first']:.3f} -> "
        f"{m['clipself_proposals']['loss_last']:.3f}{mixed_loss}.",
        f"- Dense box top-1 after CLIPSelf / image-crop top-1 of the toy CLIP: "
        f"{_ratio(patches['boxes_top1'], before['crops_top1'])} (patches), "
        f"{_ratio(proposals['boxes_top1'], before['crops_top1'])} (proposals){mixed_ratio}.",
        "",
        *(["## The teacher on each distillation mode's regions (docs/miniature.md §3)", "",
           f"The toy CLIP zero-shot on the regions of the first "
           f"{TEACHER_SCENES[bool(m['quick'])]} validation scenes, cut as the distillation "
           "mapper cuts them (`tools/teacher_regions.py`); a tight box is the RoI a dense box "
           "feature stands for.", "",
           *format_teacher_regions(m["teacher_regions"], TEACHER_ROWS), ""]
          if "teacher_regions" in m else []),
        "## Region recognition (paper Table 2 protocol; mean per-class accuracy, %)",
        "",
        "Validation panoptic split; things: RoI = box, crop = box x1.5; stuff: RoI = crop = mask",
        "box; 35 classes; masks pooled on the 16 x 16 dense map of a 128 px input.",
        "",
        "| method | Boxes top1 | Boxes top5 | Thing masks top1 | top5 | Stuff masks top1 | top5 |",
        "|---|---|---|---|---|---|---|",
        row("Image crops, toy CLIP", before, "crops"),
        row("Dense features, toy CLIP", before),
        row("Dense features, toy CLIP + CLIPSelf (patches)", patches),
        row("Dense features, toy CLIP + CLIPSelf (proposals)", proposals),
        *([row("Dense features, toy CLIP + CLIPSelf (mixed; not in the paper)", mixed)]
          if mixed else []),
        row("Image crops, CLIPSelf student (patches)", patches, "crops"),
        row("Image crops, CLIPSelf student (proposals)", proposals, "crops"),
        "",
        *(["## Weight ensembling (docs/distillation.md §7): alpha * student + (1 - alpha) * "
           "teacher", "",
           "| run | alpha | Boxes top1 | Thing masks top1 | Stuff masks top1 | Crops top1 |",
           "|---|---|---|---|---|---|", *alpha_rows, ""] if alpha_rows else []),
        *(["## K-Means of dense features (paper Figure 4)", "", "![kmeans](kmeans.png)", ""]
          if "pictures" in m else []),
        "## Open-vocabulary detection (paper Table 3)",
        "",
        f"F-ViT (frozen tower, 64-channel FPN, 160 px) trained {m['sizes']['fvit_iters']} "
        f"iterations x {m['sizes']['fvit_batch']} images on the 24 base shapes of the training "
        f"split (novel shapes are never annotated there; training under "
        f"{'bf16 autocast' if m.get('fvit_precision', 'fp32') == 'bf16' else 'fp32'}, "
        "evaluation in fp32); AP50 (%) on the validation split over "
        "the 6 novel / 24 base / all 30 shapes, with the CLIP-score ensemble (T 75, alpha 0.1, "
        "beta 0.8).",
        "",
        "| backbone | AP50 novel | AP50 base | AP50 all | AP |",
        "|---|---|---|---|---|",
        *[f"| {FVIT_BACKBONES[k]} | {d['ap50_novel']:.1f} | {d['ap50_base']:.1f} | "
          f"{d['ap50_all']:.1f} | {d['ap']:.1f} |" for k, d in m["detection"].items()],
        "",
        *([f"![detections]({m['detection_pictures']})", "",
           f"Detections scoring at least {DRAW_THRESHOLD} on the first validation images, one "
           "box per "
           f"object (class-agnostic NMS at IoU {DRAW_NMS_IOU}, nested boxes dropped, for "
           "drawing; the detections JSON files keep every box); novel classes in red, base "
           "classes in blue (paper Figure A2).", ""]
          if m.get("detection_pictures") else []),
        "## Wall time per stage (s)",
        "",
        "| stage | seconds |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.1f} |" for k, v in m["seconds"].items()]
    with open(os.path.join(out, "REPORT.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="output/demo")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI integration test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", default="", metavar="STAGES",
                        help="comma-separated stages to leave out, of: "
                             f"{', '.join(OPTIONAL_STAGES)} (make demo-seeds skips all three)")
    parser.add_argument("--fvit-precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="F-ViT training precision; auto = bf16 autocast where the CPU has "
                             "native bf16, else fp32 (evaluation is always fp32)")
    parser.add_argument("--region-crops", type=int, default=0, metavar="N",
                        help="pre-train the toy CLIP also on N captioned region crops per pool "
                             "scene (docs/miniature.md §1-§2); 0 = the original recipe")
    args = parser.parse_args(argv)
    if args.region_crops < 0:
        parser.error(f"--region-crops must be >= 0, got {args.region_crops}")
    skip = [s for s in args.skip.split(",") if s]
    unknown = sorted(set(skip) - set(OPTIONAL_STAGES))
    if unknown:
        parser.error(f"--skip: {', '.join(unknown)} cannot be skipped; optional stages are "
                     f"{', '.join(OPTIONAL_STAGES)}")

    out = os.path.abspath(args.output)
    os.makedirs(out, exist_ok=True)
    size = with_region_crops(SIZES["quick" if args.quick else "full"], args.region_crops)
    metrics = {
        "quick": args.quick, "sizes": size,
        "world": {"num_train": size["num_train"], "num_val": size["num_val"], "seed": args.seed},
        "seconds": {},
    }
    stages = [s for s in STAGES if s not in skip]
    t_all = time.time()
    state = {}
    for i, stage in enumerate(stages):
        _log(f"stage {i + 1}/{len(stages)}: {stage}")
        t0 = time.time()
        if stage == "world":
            state["data_root"] = stage_world(out, size["num_train"], size["num_val"], args.seed)
            state["env"] = dict(os.environ,
                                DETECTRON2_DATASETS=os.path.abspath(state["data_root"]))
        elif stage == "toy_clip":
            tc = stage_toy_clip(out, size, args.seed)
            state["toy"] = tc.pop("checkpoint")
            metrics["toy_clip"] = tc
            metrics["teacher_regions"] = analyze_teacher_regions(
                state["toy"], seed=args.seed, num_scenes=TEACHER_SCENES[bool(args.quick)],
                log=_log)["accuracy"]
        elif stage == "before":
            res = stage_region_before(out, state["env"], state["toy"], size, args.quick)
            metrics["region_recognition"] = {"before": _pick(res), "raw_before": res}
        elif stage == "clipself":
            cs = stage_clipself(out, state["env"], state["toy"], size, args.quick)
            metrics["region_recognition"]["after_patches"] = _pick(cs.pop("region_recognition"))
            state["clipself_ckpt"] = cs.pop("checkpoint")
            metrics["clipself"] = cs
        elif stage == "proposals":
            cs = stage_clipself(out, state["env"], state["toy"], size, args.quick, "proposals")
            # "after" = the CLIPSelf model the demo reports and detects with (Table 3)
            metrics["region_recognition"]["after"] = _pick(cs.pop("region_recognition"))
            metrics["region_recognition"]["after_source"] = "proposals"
            cs.pop("checkpoint")
            metrics["clipself_proposals"] = cs
        elif stage == "mixed":
            cs = stage_clipself(out, state["env"], state["toy"], size, args.quick, "mixed")
            metrics["region_recognition"]["after_mixed"] = _pick(cs.pop("region_recognition"))
            cs.pop("checkpoint")
            metrics["clipself_mixed"] = cs
        elif stage == "alpha":
            metrics["region_recognition"]["alpha"] = stage_alpha(
                out, state["env"], state["toy"], size, args.quick)
        elif stage == "pictures":
            metrics["pictures"] = stage_pictures(
                out, state["data_root"], state["toy"], state["clipself_ckpt"])
        elif stage == "fvit":
            towers = {"original": state["toy"],
                      "clipself": export_student(out, "clipself_proposals", state["toy"])}
            metrics["fvit_precision"] = fvit_precision(args.fvit_precision)
            _log(f"F-ViT: training in {metrics['fvit_precision']} "
                 f"(--fvit-precision {args.fvit_precision})")
            metrics["detection"] = stage_fvit(out, state["env"], towers, state["toy"], size,
                                              args.quick, metrics["fvit_precision"])
            metrics["detection_pictures"] = stage_detection_pictures(
                out, state["data_root"], state["env"],
                {k: (towers[k], d["checkpoint"]) for k, d in metrics["detection"].items()},
                state["toy"])
        metrics["seconds"][stage] = round(time.time() - t0, 2)
        elapsed = time.time() - t_all
        _log(f"stage {stage} done in {metrics['seconds'][stage]:.1f} s "
             f"(total {elapsed:.0f} s)")
    metrics["seconds"]["total"] = round(time.time() - t_all, 2)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    write_report(out, metrics)
    _log(f"report: {os.path.join(out, 'REPORT.md')}")
    return metrics


if __name__ == "__main__":
    main()
