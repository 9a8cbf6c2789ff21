"""The dense / global trade-off on the synthetic world (docs/distillation.md §10): CLIPSelf patches
distillation of the toy CLIP at several weights of the image-level term, next to the alpha
ensembles of the paper's run, each reported by dense box top-1 and image-level zero-shot mAP.

Runs, all through ``train_net.py`` on ``configs/Synthetic/clipself_toy_patches_global.py``:

* one distillation per ``model.global_loss_weight`` in ``WEIGHTS`` (0 = the paper's loss);
* ``--eval-only`` of the weight-0 checkpoint at each ``model.alpha`` in ``ALPHAS`` (weight
  ensembling, docs/distillation.md §7; alpha 0 is the toy CLIP before distillation, alpha 1 the
  weight-0 run itself).

The world and the toy CLIP of ``make demo`` are reused when their settings match
(:func:`~.cnn_vs_vit.find_world`, :func:`~.cnn_vs_vit.find_toy_clip`). ``tools/global_sweep.py``
runs it and draws the picture.
"""
import json
import os
import shutil
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from ..synthetic.writer import prepare_world
from .cnn_vs_vit import find_toy_clip, find_world
from .miniature import SIZES as MINIATURE_SIZES
from .miniature import toy_clip_settings
from .runner import TrainNetJob, run_jobs
from .toy_clip import TOY_CLIP_NAME, cached_toy_clip, register_toy_clip_configs

__all__ = [
    "CONFIG",
    "SIZES",
    "WEIGHTS",
    "ALPHAS",
    "KEYS",
    "distill_args",
    "alpha_args",
    "last_losses",
    "sweep_rows",
    "write_table",
    "run_global_sweep",
]

CONFIG = "configs/Synthetic/clipself_toy_patches_global.py"
#: the distillation of each setting, full and quick (``--quick``, the integration test); world and
#: toy CLIP are the miniature's (``clipself.engine.miniature.SIZES``, so that ``make demo``'s are
#: reused). 300 x 16 images: the schedule the sweep was measured with (README)
DISTILL = {"full": dict(distill_iters=300, distill_batch=16),
           "quick": dict(distill_iters=4, distill_batch=4)}
SIZES = {mode: {**MINIATURE_SIZES[mode], **DISTILL[mode]} for mode in DISTILL}
#: ``model.global_loss_weight`` of the distillation runs
WEIGHTS = (0.0, 0.1, 0.5, 1.0)
#: ``model.alpha`` of the weight-0 run's evaluations (1.0 is that run's own point)
ALPHAS = (0.0, 0.5, 0.7)
#: region-recognition keys kept per setting: dense (boxes, masks) and global (crops, image)
KEYS = ("boxes_top1", "thing_masks_top1", "stuff_masks_top1", "crops_top1", "image_mAP")


def _common_args(checkpoint: str, out_dir: str, batch: int, text_cache: str,
                 quick: bool) -> List[str]:
    args = [
        "--config-file", CONFIG,
        f'model.student.pretrained="{checkpoint}"',
        f'train.output_dir="{out_dir}"',
        f"dataloader.train.total_batch_size={batch}",
        f'dataloader.evaluator.vocabulary.text_encoder.cache_dir="{text_cache}"',
    ]
    if quick:
        args += ["dataloader.train.num_workers=0", "dataloader.test.num_workers=0"]
    return args


def distill_args(checkpoint: str, out_dir: str, weight: float, *, iters: int, batch: int,
                 text_cache: str, quick: bool = False) -> List[str]:
    """``train_net.py`` arguments of the distillation at ``global_loss_weight=weight`` (the
    schedule of tools/miniature_paper.py's patches run, scaled to ``iters``)."""
    warmup = max(1, min(20, iters // 15))
    return [
        *_common_args(checkpoint, out_dir, batch, text_cache, quick),
        f"model.global_loss_weight={weight}",
        f"train.max_iter={iters}", f"train.eval_period={iters}",
        f"train.checkpointer.period={iters}",
        f"train.log_period={max(1, min(iters // 4, max(10, iters // 30)))}",
        f"lr_multiplier.warmup_length={warmup / iters}",
    ]


def alpha_args(checkpoint: str, trained: str, out_dir: str, alpha: float, *, batch: int,
               text_cache: str, quick: bool = False) -> List[str]:
    """``train_net.py --eval-only`` arguments of the alpha ensemble of ``trained`` (a
    distillation's ``model_final.pth``)."""
    return ["--eval-only", *_common_args(checkpoint, out_dir, batch, text_cache, quick),
            f'train.init_checkpoint="{trained}"', f"model.alpha={alpha}"]


def last_losses(output_dir: str) -> Dict[str, float]:
    """The last logged ``loss_clipself`` and ``loss_global`` of a run's ``metrics.json`` (NaN
    when not logged). A run with one loss term logs only ``total_loss`` (Detectron2's trainer),
    which is then its ``loss_clipself``."""
    last = {"loss_clipself": float("nan"), "loss_global": float("nan")}
    path = os.path.join(output_dir, "metrics.json")
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if "total_loss" in row and "loss_clipself" not in row:
                    row["loss_clipself"] = row["total_loss"]
                last.update({k: row[k] for k in last if k in row})
    return last


def sweep_rows(weights: Mapping[float, Mapping[str, float]],
               alphas: Mapping[float, Mapping[str, float]]) -> List[Dict[str, Any]]:
    """One row per setting: ``kind`` ("weight" or "alpha"), ``value``, ``label`` and ``KEYS``.

    Args:
        weights (dict): global_loss_weight -> the run's region-recognition results.
        alphas (dict): alpha -> the weight-0 run's results at that alpha.
    """
    rows = []
    for kind, runs, name in (("weight", weights, "w"), ("alpha", alphas, "alpha")):
        for value, res in runs.items():
            rows.append({"kind": kind, "value": value, "label": f"{name}={value:g}",
                         **{k: float(res.get(k, float("nan"))) for k in KEYS}})
    return rows


def write_table(path: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a Markdown table in ``path``; returns the table."""
    head = ["setting", *KEYS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r["label"], *(f"{r[k]:.1f}" for k in KEYS)]) + " |")
    table = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(table)
    return table


def run_global_sweep(
    output: str,
    *,
    demo: Optional[str] = "output/demo",
    quick: bool = False,
    seed: int = 0,
    weights: Sequence[float] = WEIGHTS,
    alphas: Sequence[float] = ALPHAS,
    parallel: int = 2,
    log: Callable[[str], None] = print,
) -> Dict[str, Any]:
    """Run the sweep and write ``output/metrics.json`` and ``output/TABLE.md``.

    Args:
        output (str): the output folder.
        demo (str or None): ``make demo``'s folder: its world and toy CLIP are reused when their
            settings match.
        quick (bool): tiny sizes (a few iterations; the integration test).
        seed (int): world and toy-CLIP seed.
        weights (list[float]): ``global_loss_weight`` settings; must contain 0 when ``alphas``
            is not empty (the alpha ensembles are of the weight-0 run).
        alphas (list[float]): ``alpha`` settings of the weight-0 run.
        parallel (int): train_net.py jobs at once (one thread each).
        log (callable): progress lines.
    Returns:
        dict: the metrics written to ``metrics.json`` (``rows``: :func:`sweep_rows`).
    """
    if alphas and 0.0 not in [float(w) for w in weights]:
        raise ValueError("the alpha ensembles are of the weight-0 run: include 0 in weights")
    out = os.path.abspath(output)
    os.makedirs(out, exist_ok=True)
    size = SIZES["quick" if quick else "full"]
    metrics: Dict[str, Any] = {"quick": quick, "sizes": size, "seconds": {}}
    t_all = time.time()
    demo = os.path.abspath(demo) if demo else None

    world = dict(seed=seed, num_train=size["num_train"], num_val=size["num_val"])
    root = find_world(([os.path.join(demo, "datasets")] if demo else [])
                      + [os.path.join(out, "datasets")], **world)
    if root is None:
        root = os.path.join(out, "datasets")
        prepare_world(root, log=log, **world)
    else:
        log(f"world: reusing {root}")
    env = dict(os.environ, DETECTRON2_DATASETS=root)
    metrics["world"] = {**world, "root": root}

    register_toy_clip_configs()
    settings = toy_clip_settings(size, seed)
    own = os.path.join(out, "toy_clip")
    found = find_toy_clip(([os.path.join(demo, "toy_clip")] if demo else []) + [own], settings,
                          TOY_CLIP_NAME)
    toy = cached_toy_clip(found or own, settings, log=log)
    metrics["toy_clip"] = {k: toy[k] for k in ("checkpoint", "key", "zero_shot_top1")}
    metrics["seconds"]["setup"] = round(time.time() - t_all, 2)

    t0 = time.time()
    text_cache = os.path.join(out, "text_embeddings")
    ckpt, batch = toy["checkpoint"], size["distill_batch"]
    jobs = []
    for w in weights:
        out_dir = os.path.join(out, "runs", f"weight_{w:g}")
        shutil.rmtree(out_dir, ignore_errors=True)  # metrics.json is appended to: start clean
        jobs.append(TrainNetJob(f"weight_{w:g}", distill_args(
            ckpt, out_dir, w, iters=size["distill_iters"], batch=batch, text_cache=text_cache,
            quick=quick), output_dir=out_dir))
    # one job first: it fills the text-embedding cache; then `parallel` at a time
    done = run_jobs(jobs[:1], env=env, threads=1, log=log)
    done.update(run_jobs(jobs[1:], env=env, parallel=parallel, threads=1, log=log))
    weight_res = {float(w): done[f"weight_{w:g}"].results["region_recognition"] for w in weights}
    metrics["losses"] = {f"{w:g}": last_losses(j.output_dir) for w, j in zip(weights, jobs)}
    metrics["seconds"]["distill"] = round(time.time() - t0, 2)

    t0 = time.time()
    trained = os.path.join(out, "runs", "weight_0", "model_final.pth")
    alpha_jobs = [TrainNetJob(f"alpha_{a:g}", alpha_args(
        ckpt, trained, os.path.join(out, "runs", f"alpha_{a:g}"), a, batch=batch,
        text_cache=text_cache, quick=quick), output_dir=os.path.join(out, "runs", f"alpha_{a:g}"))
        for a in alphas]
    done = run_jobs(alpha_jobs, env=env, parallel=parallel, threads=1, log=log)
    alpha_res = {float(a): done[f"alpha_{a:g}"].results["region_recognition"] for a in alphas}
    metrics["seconds"]["alpha"] = round(time.time() - t0, 2)

    metrics["rows"] = sweep_rows(weight_res, alpha_res)
    metrics["seconds"]["total"] = round(time.time() - t_all, 2)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    log("\n" + write_table(os.path.join(out, "TABLE.md"), metrics["rows"]))
    return metrics
