"""Weight ensembling (docs/distillation.md §7): ``alpha * student + (1 - alpha) * teacher``."""
from typing import Dict

import torch

__all__ = ["ensemble_state_dicts"]


def ensemble_state_dicts(
    student: Dict[str, torch.Tensor], teacher: Dict[str, torch.Tensor], alpha: float
) -> Dict[str, torch.Tensor]:
    """Interpolate two state dicts key by key.

    Floating-point tensors become ``alpha * s + (1 - alpha) * t``; other tensors (integer
    buffers) are taken from the student. Both dicts must have the same keys and shapes.

    Args:
        student, teacher (dict[str, Tensor]): state dicts of the same architecture.
        alpha (float): student weight in [0, 1] (0.7 for EVA02 B/16, 0.95 for L/14).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if student.keys() != teacher.keys():
        diff = sorted(set(student) ^ set(teacher))
        raise KeyError(f"student and teacher state dicts differ in keys: {diff[:10]}")
    out = {}
    for key, s in student.items():
        t = teacher[key]
        if s.shape != t.shape:
            raise ValueError(f"{key}: shape {tuple(s.shape)} vs {tuple(t.shape)}")
        out[key] = torch.lerp(t, s, alpha) if s.is_floating_point() else s.clone()
    return out
