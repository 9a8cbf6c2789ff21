#!/usr/bin/env python
"""The miniature paper, segmentation part: CLIPSelf towers in open-vocabulary panoptic and
semantic segmentation on the synthetic world (paper Tables 4 and 5), on a CPU.

``make demo-seg`` runs this script. It reuses the world, the toy CLIP and the CLIPSelf runs of
``make demo`` (``--demo``, default ``output/demo``; the demo is run first when it is missing).
Stages (each prints its progress and wall time):

1. towers     the toy CLIP and its CLIPSelf students (patches; mixed = proposals + grid cells)
              exported as CLIP checkpoints
2. panoptic   the Mask2Former-style head (configs/Synthetic/panoptic_toy_clipself.py) trained on
              the training split (novel things are void there) on each frozen tower, evaluated
              with "Pred only", "CLIP only" and "CLIP+Pred" class scores (PQ, mIoU, mask AP)
3. semantic   the CAT-Seg head (configs/Synthetic/catseg_toy.py) trained on each tower (mIoU)
4. pictures   panoptic and semantic results of each tower on validation images

Results: ``OUTPUT/REPORT.md`` and ``OUTPUT/metrics.json``.

Usage::

    python tools/segmentation_paper.py --output output/demo_seg [--demo output/demo] [--quick]
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

from clipself.distill import export_distilled
from clipself.engine.runner import TrainNetJob, run_jobs
from clipself.synthetic import NOVEL_CLASSES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY_CLIP_MODEL = "ToyCLIP-ViT-P8"
PANOPTIC_CONFIG = "configs/Synthetic/panoptic_toy_clipself.py"
SEMANTIC_CONFIG = "configs/Synthetic/catseg_toy.py"
#: tower name -> (label in the tables, CLIPSelf run folder of the demo or None = the toy CLIP)
TOWERS = {
    "original": ("toy CLIP (original)", None),
    "clipself": ("toy CLIP + CLIPSelf (patches)", "clipself"),
    "clipself_mixed": ("toy CLIP + CLIPSelf (mixed)", "clipself_mixed"),
}
MODES = {"pred": "Pred only", "clip": "CLIP only", "ensemble": "CLIP+Pred"}
SIZES = {
    "full": dict(panoptic_iters=300, panoptic_batch=8, semantic_iters=200, semantic_batch=4,
                 pictures=3),
    "quick": dict(panoptic_iters=4, panoptic_batch=2, semantic_iters=4, semantic_batch=2,
                  pictures=1),
}


def _log(msg: str) -> None:
    print(f"[segmentation-paper {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _schedule_opts(iters: int, batch: int, quick: bool) -> list:
    return [
        f"dataloader.train.total_batch_size={batch}",
        f"train.max_iter={iters}", f"train.eval_period={iters}",
        f"train.checkpointer.period={iters}", f"train.log_period={max(1, min(20, iters // 4))}",
        f"lr_multiplier.warmup_length={max(1, iters // 15) / iters}",
        f"lr_multiplier.scheduler.milestones=[{int(iters * 0.8)}]",
        f"lr_multiplier.scheduler.num_updates={iters}",
        "dataloader.train.num_workers=" + ("0" if quick else "1"),
        "dataloader.test.num_workers=0",
    ]


def per_class_iou(sem_seg: dict) -> dict:
    """Per-class IoU (%) of a SemSegEvaluator result (``IoU-<class>`` entries; NaN for classes
    absent from the split)."""
    return {k[len("IoU-"):]: float(v) for k, v in sem_seg.items() if k.startswith("IoU-")}


def split_miou(ious: dict) -> dict:
    """mIoU over the novel (unseen in training) and the seen classes of the synthetic world."""
    def mean(vals):
        vals = [v for v in vals if not math.isnan(v)]
        return sum(vals) / len(vals) if vals else float("nan")

    novel = set(NOVEL_CLASSES)
    return {"miou_unseen": mean(v for k, v in ious.items() if k in novel),
            "miou_seen": mean(v for k, v in ious.items() if k not in novel)}


def ensure_demo(demo: str, quick: bool) -> dict:
    """The demo's metrics (running ``tools/miniature_paper.py`` first when they are missing)."""
    path = os.path.join(demo, "metrics.json")
    if not os.path.isfile(path):
        _log(f"{path} not found: running the miniature paper first (make demo)")
        cmd = [sys.executable, os.path.join(ROOT, "tools", "miniature_paper.py"),
               "--output", demo] + (["--quick"] if quick else [])
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            raise RuntimeError(f"tools/miniature_paper.py --output {demo} failed")
    with open(path) as f:
        return json.load(f)


def stage_towers(demo: str) -> dict:
    """Tower name -> CLIP checkpoint (the toy CLIP, the exported CLIPSelf students)."""
    toy = os.path.join(demo, "toy_clip", "toy_clip.pt")
    towers = {}
    for name, (_, folder) in TOWERS.items():
        if folder is None:
            towers[name] = toy
            continue
        towers[name] = os.path.join(demo, folder, "toy_clipself.pt")
        export_distilled(os.path.join(demo, folder, "model_final.pth"), towers[name],
                         model_name=TOY_CLIP_MODEL, alpha=1.0, text_from=toy)
    return towers


def stage_panoptic(out: str, env: dict, towers: dict, toy: str, size: dict, quick: bool) -> dict:
    """Train the panoptic head on each tower (in parallel), then evaluate the three modes."""
    iters = size["panoptic_iters"]
    text = [f'model.vocabulary.text_encoder.pretrained="{toy}"',
            f'model.vocabulary.text_encoder.cache_dir="{os.path.join(out, "text_embeddings")}"']
    jobs = []
    for name, tower in towers.items():
        out_dir = os.path.join(out, "panoptic", name)
        shutil.rmtree(out_dir, ignore_errors=True)
        jobs.append(TrainNetJob(name, [
            "--config-file", PANOPTIC_CONFIG, f'model.backbone.clip.pretrained="{tower}"', *text,
            *_schedule_opts(iters, size["panoptic_batch"], quick),
            f'train.output_dir="{out_dir}"'],
            output_dir=out_dir, log_file=os.path.join(out, "panoptic", f"{name}.log")))
    # the trained models are evaluated in "ensemble" mode
    trained = run_jobs(jobs, env=env, parallel=len(jobs), threads=1, log=_log)
    results = {f"{k}/ensemble": j.results for k, j in trained.items()}
    evals = []
    for name, tower in towers.items():
        for mode in ("pred", "clip"):
            out_dir = os.path.join(out, "panoptic", name, "eval_" + mode)
            evals.append(TrainNetJob(f"{name}/{mode}", [
                "--config-file", PANOPTIC_CONFIG, "--eval-only",
                f'model.backbone.clip.pretrained="{tower}"', *text,
                f'train.init_checkpoint="{os.path.join(out, "panoptic", name, "model_final.pth")}"',
                f"model.ensemble_mode={mode}", "dataloader.test.num_workers=0",
                f'train.output_dir="{out_dir}"',
            ], output_dir=out_dir,
                log_file=os.path.join(out, "panoptic", f"{name}_eval_{mode}.log")))
    # two single-thread jobs at a time on two cores
    results.update({k: j.results for k, j in run_jobs(evals, env=env, threads=1, log=_log).items()})
    res = {}
    for name in towers:
        res[name] = {}
        for mode in MODES:
            r = results[f"{name}/{mode}"]
            pq, sem, seg = r["panoptic_seg"], r["sem_seg"], r["segm"]
            res[name][mode] = {"pq": pq["PQ"], "pq_th": pq["PQ_th"], "pq_st": pq["PQ_st"],
                               "miou": sem["mIoU"], "mask_ap": seg["AP"],
                               **split_miou(per_class_iou(sem))}
        res[name]["checkpoint"] = os.path.join(out, "panoptic", name, "model_final.pth")
    return res


def stage_semantic(out: str, env: dict, towers: dict, toy: str, size: dict, quick: bool) -> dict:
    """Train the CAT-Seg head on each tower (in parallel); mIoU / mAcc on the validation split."""
    iters = size["semantic_iters"]
    jobs = []
    for name, tower in towers.items():
        out_dir = os.path.join(out, "semantic", name)
        shutil.rmtree(out_dir, ignore_errors=True)
        jobs.append(TrainNetJob(name, [
            "--config-file", SEMANTIC_CONFIG, f'model.clip.pretrained="{tower}"',
            f'model.vocabulary.text_encoder.pretrained="{toy}"',
            f'model.vocabulary.text_encoder.cache_dir="{os.path.join(out, "text_embeddings")}"',
            *_schedule_opts(iters, size["semantic_batch"], quick),
            f'train.output_dir="{out_dir}"'],
            output_dir=out_dir, log_file=os.path.join(out, "semantic", f"{name}.log")))
    res = {}
    for name, job in run_jobs(jobs, env=env, parallel=len(jobs), threads=1, log=_log).items():
        sem = job.results["sem_seg"]
        res[name] = {"miou": sem["mIoU"], "macc": sem["mACC"], "pacc": sem["pACC"],
                     **split_miou(per_class_iou(sem)),
                     "checkpoint": os.path.join(out, "semantic", name, "model_final.pth")}
    return res


def _demo_pictures(out: str, env: dict, config: str, task: str, runs: dict, images: list,
                   extra: list) -> list:
    """tools/demo.py for each (tower, model) -> rows of (label, [PIL images])."""
    from PIL import Image

    rows = []
    for name, (tower_opt, ckpt) in runs.items():
        pic_dir = os.path.join(out, "pictures", task, name)
        cmd = [sys.executable, os.path.join(ROOT, "tools", "demo.py"), "--config-file", config,
               "--input", *images, "--output", pic_dir, "--task", task,
               f'train.init_checkpoint="{ckpt}"', tower_opt, *extra]
        proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-4000:])
            raise RuntimeError(f"tools/demo.py failed for {task}/{name} (exit {proc.returncode})")
        stems = [os.path.splitext(os.path.basename(p))[0] for p in images]
        rows.append((TOWERS[name][0], [Image.open(os.path.join(pic_dir, f"{s}.png"))
                                       for s in stems]))
    return rows


def _panel(rows: list, path: str, cell: int = 300, label_w: int = 210) -> None:
    from PIL import Image, ImageDraw

    n = max(len(p) for _, p in rows)
    panel = Image.new("RGB", (label_w + cell * n, cell * len(rows)), "white")
    draw = ImageDraw.Draw(panel)
    for r, (label, pics) in enumerate(rows):
        draw.text((8, r * cell + cell // 2), label, fill="black")
        for c, pic in enumerate(pics):
            pic.thumbnail((cell - 8, cell - 8))
            panel.paste(pic, (label_w + c * cell + 4, r * cell + 4))
    panel.save(path)


def stage_pictures(out: str, data_root: str, env: dict, towers: dict, toy: str, m: dict,
                   num_images: int) -> dict:
    val_dir = os.path.join(data_root, "synthetic", "val")
    images = [os.path.join(val_dir, n) for n in sorted(os.listdir(val_dir))[:num_images]]
    text = [f'model.vocabulary.text_encoder.pretrained="{toy}"',
            f'model.vocabulary.text_encoder.cache_dir="{os.path.join(out, "text_embeddings")}"']
    pictures = {}
    if "panoptic" in m:
        runs = {k: (f'model.backbone.clip.pretrained="{towers[k]}"', m["panoptic"][k]["checkpoint"])
                for k in towers}
        rows = _demo_pictures(out, env, PANOPTIC_CONFIG, "panoptic", runs, images,
                              text + ["model.ensemble_mode=clip"])
        _panel(rows, os.path.join(out, "panoptic.png"))
        pictures["panoptic"] = "panoptic.png"
    if "semantic" in m:
        runs = {k: (f'model.clip.pretrained="{towers[k]}"', m["semantic"][k]["checkpoint"])
                for k in towers}
        rows = _demo_pictures(out, env, SEMANTIC_CONFIG, "semantic", runs, images, text)
        _panel(rows, os.path.join(out, "semantic.png"))
        pictures["semantic"] = "semantic.png"
    return pictures


def write_report(out: str, m: dict) -> None:
    s = m["sizes"]
    lines = [
        "# The miniature paper, segmentation: CLIPSelf towers on the synthetic world",
        "",
        "Produced by `make demo-seg` (`python tools/segmentation_paper.py"
        f"{' --quick' if m['quick'] else ''}`) on the CPU, on the world, toy CLIP and CLIPSelf "
        f"runs of `{m['demo']}`. Every figure was computed by this run.",
        "",
        "Towers: the toy CLIP, and its CLIPSelf students distilled on image patches (the paper's "
        "setting) and on a mix of proposals and grid cells (this project's variant). Each tower "
        "is frozen; each head is trained on the training split, where the 6 novel thing "
        "classes are void, and evaluated on the validation split over all 35 classes (30 "
        "things, 5 stuff).",
        "",
    ]
    if "panoptic" in m:
        lines += [
            "## Open-vocabulary panoptic segmentation (paper Table 5)",
            "",
            f"Mask2Former-style head (2-layer deformable pixel decoder, 3-layer masked-attention "
            f"decoder, 20 queries, 128 px) trained {s['panoptic_iters']} iterations x "
            f"{s['panoptic_batch']} images. Class scores: \"Pred only\" = the learned head, "
            "\"CLIP only\" = the tower's dense map mask-pooled and classified by the text "
            "embeddings, \"CLIP+Pred\" = the geometric ensemble (alpha 0.35 seen, beta 0.65 "
            "unseen). mIoU seen / unseen: over the 29 classes annotated in training / the 6 "
            "novel things.",
            "",
            "| tower | class score | PQ | PQ things | PQ stuff | mIoU | mIoU seen | "
            "mIoU unseen | mask AP |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for k, d in m["panoptic"].items():
            lines += [f"| {TOWERS[k][0]} | {MODES[mode]} | {d[mode]['pq']:.1f} | "
                      f"{d[mode]['pq_th']:.1f} | {d[mode]['pq_st']:.1f} | {d[mode]['miou']:.1f} | "
                      f"{d[mode]['miou_seen']:.1f} | {d[mode]['miou_unseen']:.1f} | "
                      f"{d[mode]['mask_ap']:.1f} |" for mode in MODES]
        lines.append("")
        if m.get("pictures", {}).get("panoptic"):
            lines += ["![panoptic](panoptic.png)", "",
                      "\"CLIP only\" panoptic results on validation images (one row per tower).",
                      ""]
    if "semantic" in m:
        lines += [
            "## Open-vocabulary semantic segmentation (paper Table 4)",
            "",
            f"CAT-Seg head (cost volume, spatial + class aggregation, upsampling decoder) "
            f"trained {s['semantic_iters']} iterations x {s['semantic_batch']} images; the "
            "tower's attention weights fine-tuned at LR x 0.01 as in the paper's CAT-Seg.",
            "",
            "| tower | mIoU | mIoU seen | mIoU unseen | mAcc | pAcc |",
            "|---|---|---|---|---|---|",
            *[f"| {TOWERS[k][0]} | {d['miou']:.1f} | {d['miou_seen']:.1f} | "
              f"{d['miou_unseen']:.1f} | {d['macc']:.1f} | {d['pacc']:.1f} |"
              for k, d in m["semantic"].items()],
            "",
        ]
        if m.get("pictures", {}).get("semantic"):
            lines += ["![semantic](semantic.png)", "", "Semantic results (one row per tower).",
                      ""]
    lines += ["## Wall time per stage (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in m["seconds"].items()]
    with open(os.path.join(out, "REPORT.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="output/demo_seg")
    parser.add_argument("--demo", default="output/demo",
                        help="output folder of the miniature paper (make demo)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI integration test)")
    parser.add_argument("--stages", default="towers,panoptic,semantic,pictures",
                        help="comma-separated subset of the stages to run")
    args = parser.parse_args(argv)

    out, demo = os.path.abspath(args.output), os.path.abspath(args.demo)
    os.makedirs(out, exist_ok=True)
    size = SIZES["quick" if args.quick else "full"]
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - {"towers", "panoptic", "semantic", "pictures"}
    if unknown:
        raise SystemExit(f"unknown stages {sorted(unknown)}")
    demo_metrics = ensure_demo(demo, args.quick)
    data_root = os.path.join(demo, "datasets")
    env = dict(os.environ, DETECTRON2_DATASETS=data_root)
    toy = os.path.join(demo, "toy_clip", "toy_clip.pt")
    m = {"seconds": {}}
    previous = os.path.join(out, "metrics.json")
    if os.path.isfile(previous):  # results of stages not re-run are kept
        with open(previous) as f:
            m = json.load(f)
        if m.get("quick") != args.quick or m.get("demo") != os.path.relpath(demo, ROOT):
            m = {"seconds": {}}
    m.update({"quick": args.quick, "demo": os.path.relpath(demo, ROOT), "sizes": size,
              "world": demo_metrics["world"]})
    if "towers" not in stages:
        stages.insert(0, "towers")
    t_all = time.time()
    towers = {}
    for i, stage in enumerate(stages):
        _log(f"stage {i + 1}/{len(stages)}: {stage}")
        t0 = time.time()
        if stage == "towers":
            towers = stage_towers(demo)
            m["towers"] = {k: os.path.relpath(v, ROOT) for k, v in towers.items()}
        elif stage == "panoptic":
            m["panoptic"] = stage_panoptic(out, env, towers, toy, size, args.quick)
        elif stage == "semantic":
            m["semantic"] = stage_semantic(out, env, towers, toy, size, args.quick)
        elif stage == "pictures":
            m["pictures"] = stage_pictures(out, data_root, env, towers, toy, m, size["pictures"])
        m["seconds"][stage] = round(time.time() - t0, 2)
        _log(f"stage {stage} done in {m['seconds'][stage]:.1f} s "
             f"(total {time.time() - t_all:.0f} s)")
    m["seconds"]["total"] = round(sum(v for k, v in m["seconds"].items() if k != "total"), 2)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(m, f, indent=2)
    write_report(out, m)
    _log(f"report: {os.path.join(out, 'REPORT.md')}")
    return m


if __name__ == "__main__":
    main()
