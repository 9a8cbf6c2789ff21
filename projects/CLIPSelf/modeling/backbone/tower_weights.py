"""Loading ``pretrained=`` into any tower family (docs/checkpoints.md §4,
docs/dense_features.md §9.6).

:func:`load_tower_weights` wraps ``clipself.checkpoint.load_visual_weights`` (the layout
conversions) with what needs the tower's geometry:

1. a check *before anything is resized or converted*: every checkpoint tensor whose name the
   model has must have the model's shape, except absolute positional embeddings that differ only
   in their number of positions; otherwise a ``ValueError`` lists the mismatched names with both
   shapes, and the missing and unexpected keys (a checkpoint of another tower). For checkpoints
   in the model's own names (open_clip layouts), missing or unexpected keys raise the same
   report (``RuntimeError``) under ``strict``; the authors' EVA-CLIP layout is checked for
   shapes here and for keys after its conversion (``load_visual_weights``);
2. positional embeddings of another grid resampled with the tower's own prefix-token count
   (SigLIP has none) and the attention-pool embedding of ``ModifiedResNet``;
3. open_clip's ``TimmModel`` layout (``trunk.*``, ``head.*``: the model's own names) loaded
   directly into any timm trunk, with or without transformer blocks or absolute positions
   (ConvNeXt, FastViT, Swin, the relative-position ViT).
"""
import logging
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from ...checkpoint import (
    LoadReport,
    detect_visual_layout,
    load_reported,
    load_visual_weights,
    read_checkpoint,
    split_visual_state_dict,
    timm_to_eva_clip,
    unwrap_state_dict,
)
from .. import dense_ops as ops
from .towers import ConvTower, TransformerTower

__all__ = ["load_tower_weights", "check_state_dict_shapes"]

logger = logging.getLogger(__name__)

_POS_KEYS = ("positional_embedding", "trunk.pos_embed", "attnpool.positional_embedding")


def _few(keys: List[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def _resizable(name: str, ckpt: torch.Tensor, model: torch.Tensor) -> bool:
    """A positional embedding stored for another grid (same width, other token count)."""
    return name in _POS_KEYS + ("pos_embed",) and ckpt.dim() == model.dim() and \
        ckpt.shape[-1] == model.shape[-1] and ckpt.shape[:-2] == model.shape[:-2]


def check_state_dict_shapes(
    ckpt: Mapping[str, torch.Tensor],
    model: Mapping[str, torch.Tensor],
    source: str = "<state dict>",
    strict_keys: bool = False,
) -> Tuple[List[str], List[str], List[str]]:
    """Compare a checkpoint with a model state dict by name, before any conversion or resizing.

    Args:
        ckpt (dict): checkpoint tensors, in the model's naming.
        model (dict): the model's tensors.
        source (str): named in the error.
        strict_keys (bool): also raise (``RuntimeError``) on missing or unexpected keys.
    Returns:
        tuple[list[str], list[str], list[str]]: (missing, unexpected, resizable positional keys).
    Raises:
        ValueError: when a shared name has another shape; RuntimeError: missing or unexpected
            keys with ``strict_keys``. The message lists every mismatch as
            ``name: checkpoint (..) vs model (..)``, then the missing and unexpected keys.
    """
    missing = sorted(k for k in model if k not in ckpt)
    unexpected = sorted(k for k in ckpt if k not in model)
    mismatched, resizable = [], []
    for k in sorted(set(ckpt) & set(model)):
        a, b = ckpt[k], model[k]
        if tuple(a.shape) == tuple(b.shape):
            continue
        if _resizable(k, a, b):
            resizable.append(k)
        else:
            mismatched.append(f"{k}: checkpoint {tuple(a.shape)} vs model {tuple(b.shape)}")
    if mismatched or (strict_keys and (missing or unexpected)):
        msg = (
            f"{source}: the checkpoint does not fit this tower (is it for another model?).\n"
            f"  shape mismatches ({len(mismatched)}): {_few(mismatched)}\n"
            f"  missing keys ({len(missing)}): {_few(missing)}\n"
            f"  unexpected keys ({len(unexpected)}): {_few(unexpected)}\n"
            "Pick the model_name the checkpoint was trained with"
        )
        if mismatched:
            raise ValueError(msg + ".")
        raise RuntimeError(msg + ", or pass strict_load=False to load it anyway.")
    return missing, unexpected, resizable


def _check_layout(visual: nn.Module, layout: str, name: str) -> None:
    """Raise when a checkpoint layout cannot belong to this kind of tower (another family)."""
    trunk = getattr(visual, "trunk", None)
    fits = {
        "open_clip_vit": trunk is None,  # open_clip VisionTransformer / ModifiedResNet
        "open_clip_timm": trunk is not None,
        "eva_clip": trunk is not None and hasattr(trunk, "blocks"),
        "timm_eva": trunk is not None and hasattr(trunk, "blocks"),
    }
    if not fits.get(layout, False):
        kind = f"a timm {type(trunk).__name__} tower" if trunk is not None else \
            f"an open_clip {type(visual).__name__}"
        raise ValueError(
            f"{name}: checkpoint layout '{layout}' cannot be loaded into {kind}; check that "
            "model_name matches the checkpoint (e.g. EVA02-B-16 for the authors' CLIPSelf B/16)"
        )


def _model_view(
    visual: nn.Module, layout: str, vsd: Mapping[str, torch.Tensor]
) -> Optional[Tuple[Dict[str, torch.Tensor], Dict[str, str]]]:
    """The model's tensors named as in the checkpoint layout, and ckpt name -> model name;
    None for layouts this check does not map (left to ``load_visual_weights``)."""
    msd = visual.state_dict()
    if layout in ("open_clip_vit", "open_clip_timm"):
        return dict(msd), {k: k for k in msd}
    trunk = getattr(visual, "trunk", None)
    if trunk is None or not hasattr(trunk, "blocks"):
        return None
    tsd = {k[len("trunk."):]: v for k, v in msd.items() if k.startswith("trunk.")}
    if layout == "timm_eva":
        return tsd, {k: "trunk." + k for k in tsd}
    if layout == "eva_clip" and not any(".attn.qkv." in k for k in tsd):
        view = timm_to_eva_clip(tsd, None, len(trunk.blocks))
        model_names = dict(zip(view, ("trunk." + k for k in tsd)))
        return view, model_names
    return None


def _pos_info(visual: nn.Module, tower) -> Dict[str, Tuple[Tuple[int, int], int]]:
    """model key -> (native grid, prefix tokens) of the tower's absolute positional embedding."""
    if isinstance(tower, TransformerTower):
        param, prefix = tower.pos_param()
    else:
        param, prefix = tower.pos_param(), 1  # ModifiedResNet: the mean-token slot
    if param is None:
        return {}
    key = next(k for k, p in visual.named_parameters() if p is param)
    return {key: (tuple(tower.pretrain_grid), prefix)}


def _resize_positions(
    vsd: Dict[str, torch.Tensor], keys: List[str], info: Mapping[str, Tuple[Tuple[int, int], int]]
) -> List[str]:
    done = []
    for k in keys:
        if k not in info:
            continue
        grid, prefix = info[k]
        n_src = vsd[k].shape[-2] - prefix
        side = int(round(n_src ** 0.5))
        if side * side != n_src:
            raise ValueError(
                f"{k}: {vsd[k].shape[-2]} stored positions minus {prefix} prefix token(s) is not "
                "a square grid: the checkpoint is for a tower with another number of class / "
                "register tokens (pick the model_name it was trained with)"
            )
        vsd[k] = ops.resize_abs_pos_embed(vsd[k], (side, side), grid, prefix)
        done.append(k)
    return done


def _load_direct(visual: nn.Module, vsd, name: str, layout: str, ignored, strict: bool):
    """A state dict already in the model's names (open_clip ``TimmModel`` layout) -> the tower,
    reported as ``load_visual_weights`` reports."""
    report = LoadReport(source=name, layout=layout, ignored=list(ignored))
    return load_reported(visual, vsd, report, strict)


def load_tower_weights(
    visual: nn.Module,
    tower: Union[TransformerTower, ConvTower],
    source: Union[str, Mapping[str, Any]],
    strict: bool = True,
) -> LoadReport:
    """Load a checkpoint into a tower of any family (module docstring).

    Args:
        visual (nn.Module): the open_clip visual tower.
        tower: its adapter (:func:`~clipself.modeling.backbone.towers.tower_adapter`).
        source (str or dict): checkpoint path, or a loaded (checkpoint) dict.
        strict (bool): raise ``RuntimeError`` on missing or unexpected keys.
    Returns:
        LoadReport.
    """
    name = source if isinstance(source, str) else "<state dict>"
    obj = read_checkpoint(source) if isinstance(source, str) else source
    vsd, ignored = split_visual_state_dict(unwrap_state_dict(obj))
    layout = detect_visual_layout(vsd)
    _check_layout(visual, layout, str(name))
    view = _model_view(visual, layout, vsd)
    resized: List[str] = []
    if view is not None:
        model_sd, to_model = view
        same_names = layout in ("open_clip_vit", "open_clip_timm")
        _, _, resizable = check_state_dict_shapes(
            vsd, model_sd, source=str(name), strict_keys=strict and same_names
        )
        if same_names:
            keys = [to_model[k] for k in resizable]
            resized = _resize_positions(vsd, keys, _pos_info(visual, tower))
    if layout == "open_clip_timm":  # names are the model's, positions already resized
        report = _load_direct(visual, vsd, str(name), layout, ignored, strict)
    elif resized:
        report = load_visual_weights(visual, {"visual." + k: v for k, v in vsd.items()}, strict)
        report.source, report.ignored = str(name), list(ignored)
    else:
        report = load_visual_weights(visual, obj, strict)
    report.resized = resized + [k for k in report.resized if k not in resized]
    return report
