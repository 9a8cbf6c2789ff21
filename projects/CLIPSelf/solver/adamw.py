"""AdamW with fused kernels where they exist (docs/performance.md §4)."""
from typing import Iterable, Union

import torch

__all__ = ["adamw"]


def adamw(params: Iterable, *, fused: Union[bool, str] = "auto", **kwargs) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` whose ``fused`` option follows the parameters' device.

    Args:
        params: parameters or parameter groups (``build_param_groups``).
        fused (bool or "auto"): "auto" = fused kernels when every parameter is on a CUDA device
            (one kernel per step instead of one per tensor), the default implementation
            otherwise (the CPU: identical results either way).
        kwargs: ``lr``, ``betas``, ``eps``, ``weight_decay``, ...
    """
    groups = list(params)
    if fused == "auto":
        tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
        fused = bool(tensors) and all(p.is_cuda for p in tensors)
    return torch.optim.AdamW(groups, fused=bool(fused) or None, **kwargs)
