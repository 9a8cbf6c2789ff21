"""Convert the authors' F-ViT detector checkpoints (mmdetection ``.pth``) to Detectron2
(docs/checkpoints.md §6).

The released detectors are saved as ``{"meta", "state_dict", "optimizer"}``; ``state_dict`` holds
the frozen CLIP visual tower too, so one file gives the whole Detectron2 F-ViT state dict.

Key map. Shorthand: ``BB`` = ``backbone.bottom_up``, ``RPN`` = ``proposal_generator.rpn_head``,
``BOX``/``PRED``/``MASK`` = ``roi_heads.{box_head,box_predictor,mask_head}`` (Detectron2);
``BH``/``MH`` = ``roi_head.{bbox_head,mask_head}`` (mmdet); ``i`` = the mmdet index; mmdet's
``ConvModule`` names its parts ``conv`` and ``bn``; BN = ``weight, bias, running_mean,
running_var, num_batches_tracked``, all carried over.

=============================================  ===============================================
mmdet (source)                                 Detectron2 F-ViT (target)
=============================================  ===============================================
backbone.visual.* (EVA-CLIP layout)            BB.clip.visual.* (``CLIPViT`` state dict)
backbone.interpolate1.{0,1,3}.*                BB.interpolate1.{0,1,3}.* (ConvT, BN, ConvT)
backbone.interpolate2.0.*                      BB.interpolate2.0.* (ConvT)
neck.lateral_convs.{i}.conv.weight, .bn.*      backbone.fpn_lateral{i+2}.weight, .norm.*
neck.fpn_convs.{i}.conv.weight, .bn.*          backbone.fpn_output{i+2}.weight, .norm.*
rpn_head.rpn_conv.{i}.conv.{weight,bias}       RPN.conv.conv{i}.{weight,bias}
rpn_head.rpn_conv.{i}.bn.* (OV-LVIS)           RPN.conv.conv{i}.norm.*
rpn_head.rpn_conv.{weight,bias} (one conv)     RPN.conv.{weight,bias}
rpn_head.rpn_cls.*                             RPN.objectness_logits.*
rpn_head.rpn_reg.*                             RPN.anchor_deltas.*
BH.shared_convs.{i}.conv.weight, .bn.*         BOX.conv{i+1}.weight, .norm.*
BH.shared_fcs.{i}.*                            BOX.fc{i+1}.*
BH.cls_fcs.0.*                                 PRED.cls_fc.*
BH.reg_fcs.0.*                                 PRED.reg_fc.*
BH.fc_reg.*                                    PRED.bbox_pred.*
BH.detect_temperature (any 1-element shape)    PRED.temperature (0-dim float32)
MH.convs.{i}.conv.weight, .bn.* (OV-LVIS)      MASK.mask_fcn{i+1}.weight, .norm.*
MH.upsample.*                                  MASK.deconv.*
MH.conv_logits.*                               MASK.predictor.*
BH.fc_cls.*                                    dropped (built but unused)
BH.all_embeddings                              dropped; returned as ``report.embeddings``
backbone.visual[.blocks.*.attn].rope.*         dropped (RoPE tables, recomputed)
=============================================  ===============================================

Any other key is reported as unknown (``report.unknown``), never dropped silently; keys an
F-ViT model needs but the checkpoint lacks are listed in ``report.missing``.

The visual tower goes through :func:`~clipself.checkpoint.clip_convert.load_visual_weights`
into the CLIP tower the caller builds (a ``CLIPViT`` of the checkpoint's model, which
:func:`infer_fvit_model_name` names from the width for the authors' EVA towers: 768 ->
``EVA02-B-16``, 1024 -> ``EVA02-L-14-336``), whose ``state_dict`` is then prefixed. This module
builds no model: ``clipself.engine.convert_fvit_checkpoint`` does, for files.
"""
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .clip_convert import LoadReport, load_visual_weights, unwrap_state_dict
from .io import UnsafeCheckpointError, read_checkpoint, save_checkpoint_file

__all__ = [
    "FViTConvertReport",
    "FVIT_CLIP_PREFIX",
    "check_fvit_state_dict",
    "convert_fvit_state_dict",
    "save_fvit_checkpoint",
    "fvit_key_groups",
    "infer_fvit_model_name",
    "is_fvit_mmdet_state_dict",
    "read_mmdet_checkpoint",
]

logger = logging.getLogger(__name__)

#: where the CLIP tower's (``CLIPViT``) keys live in the Detectron2 F-ViT
FVIT_CLIP_PREFIX = "backbone.bottom_up.clip."
_MMDET_VISUAL = "backbone.visual."
#: authors' visual width -> open_clip model config
_WIDTH_TO_MODEL = {768: "EVA02-B-16", 1024: "EVA02-L-14-336"}
_GROUPS = ("clip", "adapters", "fpn", "rpn", "box_head", "box_predictor", "mask_head")

_BN = r"(?P<rest>weight|bias|running_mean|running_var|num_batches_tracked)"
_WB = r"(?P<rest>weight|bias)"
_NORM = r"(?:bn|gn)\."

# (source regex, target template, offset added to group "i", group); matched with fullmatch
_RULES: Tuple[Tuple[str, str, int, str], ...] = (
    (r"backbone\.(?P<m>interpolate1\.[013]|interpolate2\.0)\." + _BN,
     "backbone.bottom_up.{m}.{rest}", 0, "adapters"),
    (r"neck\.lateral_convs\.(?P<i>\d+)\.conv\." + _WB, "backbone.fpn_lateral{i}.{rest}", 2, "fpn"),
    (r"neck\.lateral_convs\.(?P<i>\d+)\." + _NORM + _BN,
     "backbone.fpn_lateral{i}.norm.{rest}", 2, "fpn"),
    (r"neck\.fpn_convs\.(?P<i>\d+)\.conv\." + _WB, "backbone.fpn_output{i}.{rest}", 2, "fpn"),
    (r"neck\.fpn_convs\.(?P<i>\d+)\." + _NORM + _BN,
     "backbone.fpn_output{i}.norm.{rest}", 2, "fpn"),
    (r"rpn_head\.rpn_conv\.(?P<i>\d+)\.conv\." + _WB,
     "proposal_generator.rpn_head.conv.conv{i}.{rest}", 0, "rpn"),
    (r"rpn_head\.rpn_conv\.(?P<i>\d+)\." + _NORM + _BN,
     "proposal_generator.rpn_head.conv.conv{i}.norm.{rest}", 0, "rpn"),
    (r"rpn_head\.rpn_conv\." + _WB, "proposal_generator.rpn_head.conv.{rest}", 0, "rpn"),
    (r"rpn_head\.rpn_cls\." + _WB, "proposal_generator.rpn_head.objectness_logits.{rest}", 0,
     "rpn"),
    (r"rpn_head\.rpn_reg\." + _WB, "proposal_generator.rpn_head.anchor_deltas.{rest}", 0, "rpn"),
    (r"roi_head\.bbox_head\.shared_convs\.(?P<i>\d+)\.conv\." + _WB,
     "roi_heads.box_head.conv{i}.{rest}", 1, "box_head"),
    (r"roi_head\.bbox_head\.shared_convs\.(?P<i>\d+)\." + _NORM + _BN,
     "roi_heads.box_head.conv{i}.norm.{rest}", 1, "box_head"),
    (r"roi_head\.bbox_head\.shared_fcs\.(?P<i>\d+)\." + _WB,
     "roi_heads.box_head.fc{i}.{rest}", 1, "box_head"),
    (r"roi_head\.bbox_head\.cls_fcs\.0\." + _WB, "roi_heads.box_predictor.cls_fc.{rest}", 0,
     "box_predictor"),
    (r"roi_head\.bbox_head\.reg_fcs\.0\." + _WB, "roi_heads.box_predictor.reg_fc.{rest}", 0,
     "box_predictor"),
    (r"roi_head\.bbox_head\.fc_reg\." + _WB, "roi_heads.box_predictor.bbox_pred.{rest}", 0,
     "box_predictor"),
    (r"roi_head\.bbox_head\.detect_temperature", "roi_heads.box_predictor.temperature", 0,
     "box_predictor"),
    (r"roi_head\.mask_head\.convs\.(?P<i>\d+)\.conv\." + _WB,
     "roi_heads.mask_head.mask_fcn{i}.{rest}", 1, "mask_head"),
    (r"roi_head\.mask_head\.convs\.(?P<i>\d+)\." + _NORM + _BN,
     "roi_heads.mask_head.mask_fcn{i}.norm.{rest}", 1, "mask_head"),
    (r"roi_head\.mask_head\.upsample\." + _WB, "roi_heads.mask_head.deconv.{rest}", 0,
     "mask_head"),
    (r"roi_head\.mask_head\.conv_logits\." + _WB, "roi_heads.mask_head.predictor.{rest}", 0,
     "mask_head"),
)
_COMPILED = tuple((re.compile(p), t, o, g) for p, t, o, g in _RULES)

# source keys dropped on purpose (regex -> reason)
_DROPPED = (
    (re.compile(r"roi_head\.bbox_head\.fc_cls\.(weight|bias)"),
     "fc_cls is built but unused by F-ViT"),
    (re.compile(r"roi_head\.bbox_head\.all_embeddings"),
     "class embeddings are data in the Detectron2 model (returned as report.embeddings)"),
)
_EMBEDDINGS_KEY = "roi_head.bbox_head.all_embeddings"
_TEMPERATURE_KEY = "roi_head.bbox_head.detect_temperature"

_BN_NAMES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _conv_norm(prefix: str) -> List[str]:
    return [prefix + ".weight"] + [f"{prefix}.norm.{n}" for n in _BN_NAMES]


def _wb(prefix: str) -> List[str]:
    return [prefix + ".weight", prefix + ".bias"]


def _required_keys(has_mask_head: bool) -> Dict[str, List[str]]:
    """Target keys every F-ViT checkpoint must provide (besides the CLIP tower), per group."""
    a = "backbone.bottom_up."
    req = {
        "adapters": _wb(a + "interpolate1.0") + [f"{a}interpolate1.1.{n}" for n in _BN_NAMES]
        + _wb(a + "interpolate1.3") + _wb(a + "interpolate2.0"),
        "fpn": sum((_conv_norm(f"backbone.fpn_{s}{k}") for s in ("lateral", "output")
                    for k in range(2, 6)), []),
        "rpn": _wb("proposal_generator.rpn_head.objectness_logits")
        + _wb("proposal_generator.rpn_head.anchor_deltas"),
        "box_head": sum((_conv_norm(f"roi_heads.box_head.conv{k}") for k in range(1, 5)), [])
        + _wb("roi_heads.box_head.fc1") + _wb("roi_heads.box_head.fc2"),
        "box_predictor": _wb("roi_heads.box_predictor.cls_fc")
        + _wb("roi_heads.box_predictor.reg_fc") + _wb("roi_heads.box_predictor.bbox_pred")
        + ["roi_heads.box_predictor.temperature"],
    }
    if has_mask_head:
        req["mask_head"] = (
            sum((_conv_norm(f"roi_heads.mask_head.mask_fcn{k}") for k in range(1, 5)), [])
            + _wb("roi_heads.mask_head.deconv") + _wb("roi_heads.mask_head.predictor")
        )
    return req


@dataclass
class FViTConvertReport:
    """What :func:`convert_fvit_state_dict` did.

    Attributes:
        source (str): file path or a description of the state dict.
        model_name (str): the open_clip model config of the CLIP tower.
        model_name_inferred (bool): True if ``model_name`` was inferred from the visual width.
        has_mask_head (bool): the checkpoint has a mask head (the OV-LVIS detectors).
        rpn_norm (bool): the RPN convs carry a norm (OV-LVIS ``CustomRPNHead``).
        mapped (dict[str, int]): number of target keys written per group (:data:`_GROUPS`).
        dropped (dict[str, str]): source key -> why it was dropped.
        unknown (list[str]): source keys that match no rule (not converted), including visual
            keys the tower does not have.
        missing (list[str]): target keys an F-ViT model needs that the checkpoint lacks.
        notes (list[str]): shape adjustments and other remarks.
        visual (LoadReport): the report of loading ``backbone.visual.*`` into the tower.
        embeddings (Tensor or None): ``roi_head.bbox_head.all_embeddings`` as stored.
    """

    source: str = "<state dict>"
    model_name: str = ""
    model_name_inferred: bool = False
    has_mask_head: bool = False
    rpn_norm: bool = False
    mapped: Dict[str, int] = field(default_factory=dict)
    dropped: Dict[str, str] = field(default_factory=dict)
    unknown: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    visual: Optional[LoadReport] = None
    embeddings: Optional[torch.Tensor] = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when every key an F-ViT model needs was found."""
        return not self.missing

    def __str__(self) -> str:
        def _few(keys):
            keys = list(keys)
            shown = ", ".join(keys[:10])
            return shown + (f", ... ({len(keys)} in all)" if len(keys) > 10 else "")

        how = "inferred from the visual width" if self.model_name_inferred else "given"
        lines = [
            f"F-ViT mmdet checkpoint {self.source}",
            f"  CLIP model: {self.model_name} ({how}); mask head: {self.has_mask_head}; "
            f"RPN norm: {self.rpn_norm}",
            "  mapped keys: " + ", ".join(f"{g} {n}" for g, n in self.mapped.items()),
        ]
        reasons: Dict[str, List[str]] = {}
        for k, why in self.dropped.items():
            reasons.setdefault(why, []).append(k)
        for why, keys in reasons.items():
            lines.append(f"  dropped ({len(keys)}; {why}): {_few(keys)}")
        lines.append(f"  unknown keys, not converted ({len(self.unknown)}): {_few(self.unknown)}")
        lines.append(f"  missing keys ({len(self.missing)}): {_few(self.missing)}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _match(key: str) -> Optional[Tuple[str, str]]:
    """(group, target key) of a non-visual mmdet key, or None."""
    for pattern, template, offset, group in _COMPILED:
        m = pattern.fullmatch(key)
        if m is None:
            continue
        parts: Dict[str, Any] = m.groupdict()
        if parts.get("i") is not None:
            parts["i"] = int(parts["i"]) + offset
        return group, template.format(**parts)
    return None


def _drop_reason(key: str) -> Optional[str]:
    for pattern, reason in _DROPPED:
        if pattern.fullmatch(key):
            return reason
    return None


def is_fvit_mmdet_state_dict(sd: Mapping[str, Any]) -> bool:
    """True for the authors' F-ViT mmdet layout: ``backbone.visual.*`` plus mmdet heads."""
    keys = list(sd)
    return any(k.startswith(_MMDET_VISUAL) for k in keys) and any(
        k.startswith(("neck.", "rpn_head.", "roi_head.")) for k in keys
    )


def fvit_key_groups(sd: Mapping[str, Any]) -> Dict[str, int]:
    """Count the source keys of an F-ViT mmdet state dict per group.

    Args:
        sd (dict): flat mmdet state dict.
    Returns:
        dict[str, int]: counts for :data:`_GROUPS` (``clip`` = ``backbone.visual.*``), plus
        ``dropped`` and ``unknown``; groups without keys are left out.
    """
    counts = {g: 0 for g in _GROUPS + ("dropped", "unknown")}
    for k in sd:
        if k.startswith(_MMDET_VISUAL):
            counts["clip"] += 1
        elif _drop_reason(k) is not None:
            counts["dropped"] += 1
        else:
            hit = _match(k)
            counts[hit[0] if hit else "unknown"] += 1
    return {g: n for g, n in counts.items() if n}


def infer_fvit_model_name(sd: Mapping[str, torch.Tensor]) -> str:
    """The open_clip config of the authors' EVA tower from its width (768 -> ``EVA02-B-16``,
    1024 -> ``EVA02-L-14-336``).

    Args:
        sd (dict): flat mmdet state dict (``backbone.visual.*`` in the EVA-CLIP layout).
    Returns:
        str: model config name.
    """
    w = sd.get(_MMDET_VISUAL + "patch_embed.proj.weight")
    if w is None:
        raise ValueError(
            "cannot infer the CLIP model: no backbone.visual.patch_embed.proj.weight (the "
            "authors' EVA layout); pass model_name"
        )
    width = int(w.shape[0])
    if width not in _WIDTH_TO_MODEL:
        raise ValueError(
            f"cannot infer the CLIP model from visual width {width} (known: "
            f"{_WIDTH_TO_MODEL}); pass model_name"
        )
    return _WIDTH_TO_MODEL[width]


def _temperature(v: torch.Tensor, notes: List[str]) -> torch.Tensor:
    if v.numel() != 1:
        raise ValueError(f"{_TEMPERATURE_KEY} has shape {tuple(v.shape)}; expected one value")
    if v.dim() != 0:
        notes.append(f"{_TEMPERATURE_KEY}: shape {tuple(v.shape)} stored as a 0-dim tensor")
    return v.detach().reshape(()).float().clone()


def _source_visual_name(key: str, sd: Mapping[str, Any]) -> str:
    """Name a tower key (``trunk.x``) reported as unexpected by the checkpoint key it came from."""
    bare = key[len("trunk."):] if key.startswith("trunk.") else key
    for cand in (bare, key):
        if _MMDET_VISUAL + cand in sd:
            return _MMDET_VISUAL + cand
    return f"{_MMDET_VISUAL}{bare} (tower key {key})"


def check_fvit_state_dict(sd: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """The flat state dict of an F-ViT mmdet checkpoint; ``ValueError`` if it is none."""
    sd = unwrap_state_dict(sd)
    if not is_fvit_mmdet_state_dict(sd):
        raise ValueError(
            "not an F-ViT mmdet state dict: expected backbone.visual.* and neck./rpn_head./"
            "roi_head. keys"
        )
    return sd


def convert_fvit_state_dict(
    sd: Mapping[str, torch.Tensor], clip: nn.Module
) -> Tuple[Dict[str, torch.Tensor], FViTConvertReport]:
    """Convert an F-ViT mmdet state dict to the Detectron2 F-ViT keys (table in the module doc).

    Args:
        sd (dict): the mmdet ``state_dict`` (a whole checkpoint dict is unwrapped too).
        clip (nn.Module): the F-ViT's CLIP tower (a ``clipself.modeling.CLIPViT`` of the
            checkpoint's model, see :func:`infer_fvit_model_name`): the visual weights are
            loaded into its ``visual`` and its whole ``state_dict`` is written; it is modified.
    Returns:
        tuple: (Detectron2 state dict, :class:`FViTConvertReport`). Non-visual tensors are the
        input tensors (not copied), except ``temperature``.
    """
    sd = check_fvit_state_dict(sd)
    report = FViTConvertReport()
    report.has_mask_head = any(k.startswith("roi_head.mask_head.") for k in sd)
    report.rpn_norm = any(re.fullmatch(r"rpn_head\.rpn_conv\.\d+\.(bn|gn)\..+", k) for k in sd)

    # the CLIP tower, through the project's loader
    visual_sd = {k: v for k, v in sd.items() if k.startswith(_MMDET_VISUAL)}
    report.model_name = str(getattr(clip, "model_name", ""))
    vrep = load_visual_weights(clip.visual, visual_sd, strict=False)
    vrep.source = _MMDET_VISUAL + "*"
    report.visual = vrep
    out: Dict[str, torch.Tensor] = {
        FVIT_CLIP_PREFIX + k: v.detach().clone() for k, v in clip.state_dict().items()
    }
    report.mapped = {g: 0 for g in _GROUPS}
    report.mapped["clip"] = len(out)
    report.missing += [FVIT_CLIP_PREFIX + "visual." + k for k in vrep.missing_keys]
    report.unknown += [_source_visual_name(k, sd) for k in vrep.unexpected_keys]
    if vrep.layout == "eva_clip":
        for k in visual_sd:
            if ".rope." in k:
                report.dropped[k] = "EVA RoPE buffer (recomputed by the model)"
    if vrep.resized:
        report.notes.append(f"resampled to the model grid: {', '.join(vrep.resized)}")

    # everything else, by name
    sources: Dict[str, str] = {}
    for k, v in sd.items():
        if k.startswith(_MMDET_VISUAL):
            continue
        reason = _drop_reason(k)
        if reason is not None:
            report.dropped[k] = reason
            if k == _EMBEDDINGS_KEY:
                report.embeddings = v
            continue
        hit = _match(k)
        if hit is None:
            report.unknown.append(k)
            continue
        group, target = hit
        if target in sources:
            raise ValueError(f"{k} and {sources[target]} both map to {target}")
        sources[target] = k
        out[target] = _temperature(v, report.notes) if k == _TEMPERATURE_KEY else v
        report.mapped[group] += 1
    report.mapped = {g: n for g, n in report.mapped.items() if n}

    required = _required_keys(report.has_mask_head)
    report.missing += [k for keys in required.values() for k in keys if k not in out]
    rpn_conv = "proposal_generator.rpn_head.conv."
    if not any(k.startswith(rpn_conv) for k in out):
        report.missing.append(rpn_conv + "conv0.weight")
    if report.unknown:
        logger.warning("F-ViT conversion: %d unknown keys not converted: %s",
                       len(report.unknown), ", ".join(report.unknown[:10]))
    return out, report


def read_mmdet_checkpoint(path: str) -> Any:
    """:func:`read_checkpoint` that also admits numpy scalars (mmcv may store some in ``meta``).

    Still ``weights_only``: only numpy's scalar and dtype reconstruction is allowed in addition.

    Args:
        path (str): checkpoint file.
    Returns:
        the loaded object.
    """
    try:
        return read_checkpoint(path)
    except (RuntimeError, UnsafeCheckpointError) as err:
        try:
            from numpy._core.multiarray import scalar
        except ImportError:  # numpy < 2
            from numpy.core.multiarray import scalar
        allowed: List[Any] = [scalar, np.dtype]
        allowed += [(scalar, f"{m}.multiarray.scalar") for m in ("numpy.core", "numpy._core")]
        allowed += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            raise err


def save_fvit_checkpoint(
    out: Mapping[str, torch.Tensor], report: FViTConvertReport, output_path: str,
    save_embeddings: Optional[str] = None,
) -> None:
    """Write a converted F-ViT as the Detectron2 checkpoint
    ``{"model": state_dict, "__author__": ..., "matching_heuristics": False}`` (loadable by
    ``DetectionCheckpointer(model).load``) and, optionally, the authors' stored class embeddings
    (``roi_head.bbox_head.all_embeddings``, a tensor) to ``save_embeddings``."""
    if save_embeddings and report.embeddings is None:
        raise ValueError(f"{report.source} has no {_EMBEDDINGS_KEY} to save")
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    ckpt = {
        "model": dict(out),
        "__author__": "CLIPSelf F-ViT (mmdet), converted by clipself.checkpoint.fvit_convert",
        "matching_heuristics": False,
    }
    save_checkpoint_file(ckpt, output_path)
    if save_embeddings:
        os.makedirs(os.path.dirname(os.path.abspath(save_embeddings)), exist_ok=True)
        save_checkpoint_file(report.embeddings.detach().clone(), save_embeddings)
    logger.info("wrote %s\n%s", output_path, report)
