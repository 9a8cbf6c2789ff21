"""Export a CLIPSelf training checkpoint as a CLIP checkpoint (docs/distillation.md §7,
docs/checkpoints.md §2).

``model_final.pth`` of a CLIPSelf run holds ``student.*`` and ``teacher.*``. The export is
``alpha * student + (1 - alpha) * teacher`` for the visual tower, in the authors' CLIPSelf format
``{"epoch", "name", "state_dict"}`` (``visual.*`` keys; EVA02 towers in the EVA-CLIP layout, every
other tower in open_clip's names), plus the original text tower when given,
so that ``CLIPTower(pretrained=out)`` and ``TextClassifier(pretrained=out)`` both load it.
"""
import logging
from typing import Optional

from ..checkpoint.clip_convert import export_clipself_checkpoint, read_checkpoint, unwrap_state_dict
from ..modeling import CLIPTower
from .ensemble import ensemble_state_dicts

__all__ = ["export_distilled"]

logger = logging.getLogger(__name__)


def _sub(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def export_distilled(
    checkpoint: str,
    output: str,
    *,
    model_name,
    alpha: float,
    text_from: Optional[str] = None,
) -> dict:
    """Write the weight ensemble of a CLIPSelf run as a CLIP checkpoint.

    Args:
        checkpoint (str): a ``train_net.py`` checkpoint of :class:`CLIPSelf` (``model_*.pth``).
        output (str): destination ``.pt``.
        model_name (str or dict): the CLIP model config (as in the training config).
        alpha (float): student weight (1 = the student alone).
        text_from (str): the original CLIP checkpoint whose text tower is copied (optional).
    Returns:
        dict: the written checkpoint.
    """
    sd = unwrap_state_dict(read_checkpoint(checkpoint))
    student, teacher = _sub(sd, "student."), _sub(sd, "teacher.")
    if not student or not teacher:
        raise KeyError(f"{checkpoint} is not a CLIPSelf checkpoint (no student./teacher. keys)")
    tower = CLIPTower(model_name)
    tower.load_state_dict(ensemble_state_dicts(student, teacher, alpha))
    extra = None
    if text_from:
        original = unwrap_state_dict(read_checkpoint(text_from))
        extra = {k: v for k, v in original.items() if not k.startswith("visual.")}
    ckpt = export_clipself_checkpoint(
        tower.visual, output, extra_state=extra, name=f"clipself alpha={alpha}"
    )
    logger.info(f"Exported alpha={alpha} ensemble of {checkpoint} to {output}")
    return ckpt
