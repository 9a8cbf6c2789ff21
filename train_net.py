#!/usr/bin/env python
"""The one entry point for CLIPSelf distillation, F-ViT detection, segmentation and evaluation.

Detectron2 LazyConfig training script::

    python train_net.py --config-file configs/X.py [--num-gpus 8] [key=value ...]
    python train_net.py --config-file configs/X.py --eval-only train.init_checkpoint=/path/m.pth
    python train_net.py --config-file configs/X.py --resume      # continue train.output_dir
    (machine i)$ python train_net.py --config-file X.py --num-machines 2 --machine-rank i \
        --dist-url tcp://HOST:PORT

Overrides use Hydra's grammar (quote strings with ``=`` or ``/``: ``'train.output_dir="a/b"'``).
A key that does not exist in the config is rejected; ``+key=value`` adds one on purpose.
Without a GPU everything runs on the CPU (``train.device=auto``); ``--num-gpus N`` then starts
N processes that train together over gloo.

Every evaluation writes ``eval_results.json`` into ``train.output_dir``: the evaluators' nested
results (``results``: task -> metric -> value, NaN as null) with the config file, the checkpoint
and the iteration (read it with ``clipself.engine.read_eval_results``).
"""
import logging
import os

import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import default_argument_parser, default_setup, hooks, launch
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from clipself.data.resumable_loader import set_loader_position
from clipself.engine import (
    EVAL_RESULTS_FILE,
    Checkpointer,
    Trainer,
    apply_overrides,
    create_ddp_model,
    default_writers,
    resolve_device,
    unwrap_model,
    write_eval_results,
)

logger = logging.getLogger("clipself")


def _amp_enabled(cfg) -> bool:
    enabled = cfg.train.amp.get("enabled", "auto")
    if enabled == "auto":
        return cfg.train.device.startswith("cuda")
    return bool(enabled)


def do_test(cfg, model, info=None):
    """Evaluate ``model`` on ``cfg.dataloader.test`` with ``cfg.dataloader.evaluator``; the main
    process prints the results and writes them to ``train.output_dir/eval_results.json``.

    Args:
        info (dict): more entries of ``eval_results.json`` (config file, checkpoint, iteration).
    Returns:
        dict: the evaluator's results (empty when the config has no evaluator).
    """
    if "evaluator" not in cfg.dataloader or cfg.dataloader.evaluator is None:
        logger.info("No dataloader.evaluator in the config: skipping evaluation.")
        return {}
    results = inference_on_dataset(
        model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
    )
    if comm.is_main_process() and results:
        print_csv_format(results)
        path = os.path.join(cfg.train.output_dir, EVAL_RESULTS_FILE)
        write_eval_results(path, results, **(info or {}))
        logger.info(f"Evaluation results written to {path}")
    return results or {}


def _eval_info(args, checkpoint, iteration):
    """``eval_results.json``'s entries besides the results; ``iteration``: training iterations
    done (None for ``--eval-only``)."""
    return {"config_file": os.path.abspath(args.config_file),
            "checkpoint": os.path.abspath(checkpoint) if checkpoint else "",
            "iteration": iteration}


def build_trainer(args, cfg):
    """Model, optimizer, data, hooks and checkpointer of a training run, restored per ``--resume``.

    Returns:
        (Trainer, Checkpointer): the trainer's ``iter`` is the last completed iteration
        when resuming (training continues at ``trainer.iter + 1``).
    """
    model = instantiate(cfg.model)
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    compile_opts = cfg.train.get("compile", {}) or {}
    if compile_opts.get("enabled", False):
        # in place (nn.Module.compile): parameters and checkpoint keys stay the model's own
        model.compile(mode=compile_opts.get("mode", None))
        logger.info("torch.compile: the model's forward is compiled (mode=%s)",
                    compile_opts.get("mode", None))

    train_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **cfg.train.ddp)
    clip = cfg.train.get("clip_grad", {"enabled": False})
    trainer = Trainer(
        model,
        train_loader,
        optim,
        amp_enabled=_amp_enabled(cfg),
        amp_dtype=cfg.train.amp.get("dtype", "float16"),
        clip_grad_norm=clip["params"]["max_norm"] if clip.get("enabled") else None,
        clip_grad_norm_type=clip["params"].get("norm_type", 2.0) if clip.get("enabled") else 2.0,
        seed=cfg.train.get("seed", -1),
    )
    checkpointer = Checkpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
            if comm.is_main_process()
            else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(
                cfg, model, _eval_info(args, checkpointer.get_checkpoint_file(),
                                       min(trainer.iter + 1, cfg.train.max_iter)))),
            hooks.PeriodicWriter(
                default_writers(cfg.train.output_dir, cfg.train.max_iter),
                period=cfg.train.log_period,
            )
            if comm.is_main_process()
            else None,
        ]
    )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    return trainer, checkpointer


def resume_data_stream(trainer, start_iter: int) -> None:
    """Continue the training data stream where the checkpoint left it (batch ``start_iter``)."""
    saved = getattr(trainer, "resumed_data", None) or {}
    if saved.get("seed", trainer.seed) != trainer.seed:
        logger.warning(f"Resuming with train.seed={trainer.seed}, but the checkpoint was trained "
                       f"with {saved.get('seed')}: the data order and random draws differ")
    batches = saved.get("batches", start_iter)
    if set_loader_position(trainer.data_loader, batches):
        logger.info(f"Resuming the data stream at batch {batches}")
    else:
        logger.warning("This config's train loader is not clipself.data.build_train_loader: the "
                       "resumed run restarts its data stream (not an exact resume)")


def do_train(args, cfg):
    """Train ``cfg.model`` with ``cfg.optimizer``, ``cfg.lr_multiplier``, ``cfg.dataloader.train``.

    ``cfg.train`` keys used: output_dir, init_checkpoint, max_iter, device, amp, clip_grad, ddp,
    checkpointer (period, max_to_keep), eval_period, log_period.
    """
    trainer, checkpointer = build_trainer(args, cfg)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    if start_iter:
        resume_data_stream(trainer, start_iter)
    trainer.train(start_iter, cfg.train.max_iter)
    return trainer


def setup(args):
    """Load the config, apply validated overrides, resolve the device, run ``default_setup``."""
    cfg = LazyConfig.load(args.config_file)
    cfg = apply_overrides(cfg, args.opts)
    cfg.train.device = resolve_device(cfg.train.get("device", "auto"))
    default_setup(cfg, args)
    # the project's own loggers (clipself.*) write to the console and log.txt as Detectron2's do
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="clipself")
    if cfg.train.device == "cpu":
        logger.info(f"Running on the CPU with {torch.get_num_threads()} threads")
    return cfg


def check_eval_weights(cfg, model, config_file: str) -> None:
    """``--eval-only`` evaluates trained weights: ``train.init_checkpoint``, or (for a model that
    evaluates its own tower, e.g. CLIPSelf's region evaluation) the tower's ``pretrained=``.
    ``train.allow_random_init=True`` evaluates randomly initialised weights on purpose."""
    if cfg.train.init_checkpoint or cfg.train.get("allow_random_init", False):
        return
    if getattr(unwrap_model(model), "weights_loaded", False):
        return
    raise ValueError(
        f"--eval-only without weights: {config_file} has train.init_checkpoint=\"\" "
        f"and its {type(unwrap_model(model)).__name__} would be evaluated with random weights. "
        f"Pass train.init_checkpoint=/path/to/model_final.pth (e.g. "
        f"{os.path.join(cfg.train.output_dir, 'model_final.pth')} after training), or "
        f"train.allow_random_init=True to evaluate random weights on purpose.")


def main(args):
    cfg = setup(args)
    try:
        if args.eval_only:
            model = instantiate(cfg.model)
            model.to(cfg.train.device)
            model = create_ddp_model(model)
            check_eval_weights(cfg, model, args.config_file)
            Checkpointer(model).load(cfg.train.init_checkpoint)
            return do_test(cfg, model, _eval_info(args, cfg.train.init_checkpoint, None))
        do_train(args, cfg)
        return None
    finally:
        # Shut the process group down explicitly: a gloo group torn down by the interpreter at
        # exit can abort a worker ("terminate called without an active exception").
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            comm.synchronize()
            torch.distributed.destroy_process_group()


def invoke_main() -> None:
    args = default_argument_parser(epilog=__doc__).parse_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()  # pragma: no cover
