"""File conversions of released checkpoints (``tools/convert_checkpoint.py``): build the target
tower, map the keys with :mod:`clipself.checkpoint`, write the result.

* :func:`convert_clip_checkpoint`: a CLIP / CLIPSelf visual tower between the authors' EVA-CLIP
  layout and open_clip's;
* :func:`convert_fvit_checkpoint`: the authors' F-ViT (mmdetection) detector to Detectron2.
"""
import logging
import os
from typing import Mapping, Optional, Union

from ..checkpoint import (
    FViTConvertReport,
    LoadReport,
    check_fvit_state_dict,
    convert_fvit_state_dict,
    export_clipself_checkpoint,
    infer_fvit_model_name,
    non_visual_state,
    read_checkpoint,
    read_mmdet_checkpoint,
    save_checkpoint_file,
    save_fvit_checkpoint,
    unwrap_state_dict,
)
from ..modeling import CLIPTower, CLIPViT

__all__ = ["convert_clip_checkpoint", "convert_fvit_checkpoint"]

logger = logging.getLogger(__name__)


def convert_clip_checkpoint(
    src: str,
    dst: str,
    model_name: Union[str, Mapping] = "EVA02-B-16",
    to: str = "open_clip",
    include_text: bool = True,
    strict: bool = True,
) -> LoadReport:
    """Convert a CLIP/CLIPSelf checkpoint between the authors' and open_clip's layouts.

    The visual tower is loaded into the :func:`~clipself.modeling.CLIPTower` of ``model_name``
    (any supported input layout, see :func:`clipself.checkpoint.load_visual_weights`) and
    written back out:

    - ``to="open_clip"``: a flat open_clip state dict (``visual.trunk.*`` for EVA), loadable by
      ``CLIPViT(pretrained=dst)`` and, with the text keys, by ``open_clip.create_model``;
    - ``to="clipself"``: the authors' ``{"epoch", "name", "state_dict"}``, EVA-CLIP keys for
      EVA02 towers (open_clip's names for every other tower).

    Non-visual keys (``text.*``, ``logit_scale``) are copied verbatim when ``include_text``.

    Args:
        src (str): input checkpoint. dst (str): output file.
        model_name (str or dict): the open_clip model config of the checkpoint.
        to (str): "open_clip" or "clipself".
        include_text (bool): carry over the non-visual keys.
        strict (bool): fail on missing or unexpected visual keys.
    Returns:
        LoadReport: the report of loading ``src``.
    """
    if to not in ("open_clip", "clipself"):
        raise ValueError(f"to={to!r}; use 'open_clip' or 'clipself'")
    sd = unwrap_state_dict(read_checkpoint(src))
    model = CLIPTower(model_name, pretrained=sd, strict_load=strict)
    report = model.load_report
    report.source = src
    extra = non_visual_state(sd) if include_text else {}
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    if to == "open_clip":
        out = {"visual." + k: v for k, v in model.visual.state_dict().items()}
        out.update(extra)
        save_checkpoint_file(out, dst)
    else:
        export_clipself_checkpoint(model.visual, dst, extra_state=extra, name=model.model_name)
    logger.info("wrote %s (%s layout)", dst, to)
    return report


def convert_fvit_checkpoint(
    input_path: str,
    output_path: str,
    model_name: Optional[Union[str, Mapping]] = None,
    save_embeddings: Optional[str] = None,
    strict: bool = True,
) -> FViTConvertReport:
    """Convert the authors' F-ViT ``.pth`` into a Detectron2 checkpoint.

    Args:
        input_path (str): mmdet checkpoint ``{"meta", "state_dict", "optimizer"}``.
        output_path (str): Detectron2 checkpoint to write (see
            :func:`clipself.checkpoint.save_fvit_checkpoint`).
        model_name (str or dict): CLIP model config; None infers it from the visual width (see
            :func:`clipself.checkpoint.infer_fvit_model_name`).
        save_embeddings (str): also save the authors' class embeddings to this file.
        strict (bool): raise ``RuntimeError`` (with the report) when keys an F-ViT model needs
            are missing. Unknown keys never fail the conversion; they are reported.
    Returns:
        FViTConvertReport: the report (also logged).
    """
    sd = check_fvit_state_dict(read_mmdet_checkpoint(input_path))
    inferred = model_name is None
    clip = CLIPViT(infer_fvit_model_name(sd) if inferred else model_name)
    out, report = convert_fvit_state_dict(sd, clip)
    report.model_name_inferred = inferred
    report.source = input_path
    if report.missing and strict:
        raise RuntimeError(
            f"{report}\nthe checkpoint lacks keys of an F-ViT model; strict=False writes it anyway"
        )
    save_fvit_checkpoint(out, report, output_path, save_embeddings)
    return report
