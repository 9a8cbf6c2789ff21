"""Optimizer parameter groups (weight-decay exemptions, per-parameter LR factors)."""
from typing import Callable, Dict, List, Optional, Sequence

import torch

__all__ = ["build_param_groups", "is_no_decay"]

#: Name fragments exempt from weight decay in CLIPSelf training (docs/distillation.md §6,
#: open_clip's rule).
CLIPSELF_NO_DECAY_KEYWORDS = ("bn", "ln", "bias", "logit_scale")


def is_no_decay(
    name: str,
    param: torch.Tensor,
    keywords: Sequence[str] = CLIPSELF_NO_DECAY_KEYWORDS,
    ndim_below: int = 2,
) -> bool:
    """Whether a parameter is exempt from weight decay: ``ndim < ndim_below`` or a keyword in
    its name (substring match, as open_clip does)."""
    return param.ndim < ndim_below or any(k in name for k in keywords)


def build_param_groups(
    model: torch.nn.Module,
    *,
    weight_decay: float,
    no_decay_keywords: Sequence[str] = CLIPSELF_NO_DECAY_KEYWORDS,
    no_decay_ndim_below: int = 2,
    lr_factor_func: Optional[Callable[[str], float]] = None,
    base_lr: Optional[float] = None,
) -> List[Dict]:
    """Parameter groups for a torch optimizer.

    Frozen parameters (``requires_grad=False``, e.g. a distillation teacher) are left out; shared
    parameters appear once. Set ``no_decay_keywords=[]`` and ``no_decay_ndim_below=0`` for "weight
    decay on everything" (F-ViT, docs/fvit.md §8).

    Args:
        model (nn.Module): the model (set by train_net.py as ``cfg.optimizer.params.model``).
        weight_decay (float): decay of the non-exempt parameters.
        no_decay_keywords (list[str]): name fragments whose parameters get no decay.
        no_decay_ndim_below (int): parameters with fewer dimensions get no decay (biases, norms).
        lr_factor_func (callable): optional ``name -> lr multiplier`` (e.g. layer-wise decay).
        base_lr (float): the optimizer's lr; required with ``lr_factor_func`` (groups get
            ``lr = base_lr * factor``, which the LR scheduler then scales over time).
    Returns:
        list[dict]: one group per (weight decay, lr factor) pair, each with ``params`` and
        ``weight_decay`` (and ``lr`` when ``lr_factor_func`` is given).
    """
    if lr_factor_func is not None and base_lr is None:
        raise ValueError("build_param_groups: lr_factor_func requires base_lr")
    groups: Dict[tuple, Dict] = {}
    seen = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        exempt = is_no_decay(name, param, no_decay_keywords, no_decay_ndim_below)
        wd = 0.0 if exempt else weight_decay
        factor = 1.0 if lr_factor_func is None else float(lr_factor_func(name))
        group = groups.setdefault((wd, factor), {"params": [], "weight_decay": wd})
        if lr_factor_func is not None:
            group["lr"] = base_lr * factor
        group["params"].append(param)
    if not groups:
        raise ValueError("build_param_groups: the model has no trainable parameters")
    return list(groups.values())
