# LR multipliers: functions returning a LazyCall, used as
#   lr_multiplier = warmup_cosine(max_iter=train.max_iter, warmup_iters=1000)
from fvcore.common.param_scheduler import (
    ConstantParamScheduler,
    CosineParamScheduler,
    MultiStepParamScheduler,
)

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler


def warmup_cosine(max_iter, warmup_iters, warmup_factor=0.001):
    """Linear warm-up over `warmup_iters`, then cosine from 1 to 0 over the remaining iterations
    (CLIPSelf, docs/distillation.md §6: lr*(step+1)/warmup, then cosine to 0)."""
    return L(WarmupParamScheduler)(
        scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.0),
        warmup_length=warmup_iters / max_iter,
        warmup_factor=warmup_factor,
        warmup_method="linear",
        rescale_interval=True,
    )


def warmup_multistep(max_iter, milestones, warmup_iters, warmup_factor=0.001, gamma=0.1):
    """Linear warm-up, then the LR is multiplied by `gamma` at each milestone (F-ViT, docs/fvit.md
    §8)."""
    values = [gamma**i for i in range(len(milestones) + 1)]
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=values, milestones=list(milestones), num_updates=max_iter
        ),
        warmup_length=warmup_iters / max_iter,
        warmup_factor=warmup_factor,
        warmup_method="linear",
    )


def warmup_constant(max_iter, warmup_iters, warmup_factor=0.001):
    """Linear warm-up, then a constant LR (F-ViT OV-COCO: its LR step at epoch 100 never comes)."""
    return L(WarmupParamScheduler)(
        scheduler=L(ConstantParamScheduler)(value=1.0),
        warmup_length=warmup_iters / max_iter,
        warmup_factor=warmup_factor,
        warmup_method="linear",
    )
