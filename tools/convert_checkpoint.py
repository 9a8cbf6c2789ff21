#!/usr/bin/env python
"""Convert CLIP/CLIPSelf checkpoints between the authors' EVA-CLIP layout and open_clip's, and the
authors' F-ViT detectors (mmdetection) to Detectron2.

Examples::

    # the authors' released CLIPSelf weights -> open_clip layout (visual.trunk.*, text.*)
    python tools/convert_checkpoint.py to-open-clip --model EVA02-B-16 \\
        --input eva_vitb16_coco_clipself_patches.pt --output clipself_b16_openclip.pt

    # an open_clip / project checkpoint -> the authors' layout ({"state_dict": visual.*})
    python tools/convert_checkpoint.py to-clipself --model EVA02-B-16 \\
        --input clipself_b16_openclip.pt --output eva_vitb16_clipself.pt

    # a released F-ViT detector (mmdet .pth) -> a Detectron2 checkpoint for DetectionCheckpointer;
    # the CLIP model is inferred from the visual width (768: EVA02-B-16, 1024: EVA02-L-14-336)
    python tools/convert_checkpoint.py fvit-from-mmdet \\
        --input fvit_eva_vitb16_ovcoco_clipself_proposals.pth --output fvit_b16_ovcoco_d2.pth \\
        --save-embeddings fvit_b16_ovcoco_embeddings.pt

    # what is in a file (recognises F-ViT mmdet detectors and lists their key groups)
    python tools/convert_checkpoint.py inspect --input eva_vitb16_coco_clipself_patches.pt

Missing and unexpected visual keys are printed; ``--no-strict`` writes the output anyway. For
F-ViT, dropped and unknown keys are listed (unknown keys are not converted).
"""
import argparse
import json
import logging
import sys
from collections import Counter
from typing import List, Optional

from clipself.checkpoint import (
    FVIT_CLIP_PREFIX,
    detect_visual_layout,
    fvit_key_groups,
    infer_fvit_model_name,
    is_fvit_mmdet_state_dict,
    read_mmdet_checkpoint,
    split_visual_state_dict,
    unwrap_state_dict,
)
from clipself.engine.convert import convert_clip_checkpoint, convert_fvit_checkpoint


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("to-open-clip", "write an open_clip-layout state dict"),
        ("to-clipself", "write the authors' CLIPSelf/EVA-CLIP checkpoint format"),
    ):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--model", default="EVA02-B-16",
                       help="open_clip model config name or .json file (default EVA02-B-16)")
        s.add_argument("--input", required=True, help="input checkpoint")
        s.add_argument("--output", required=True, help="output file")
        s.add_argument("--visual-only", action="store_true", help="drop text.* and logit_scale")
        s.add_argument("--no-strict", action="store_true",
                       help="write the output even if visual keys are missing or unexpected")
    s = sub.add_parser("fvit-from-mmdet",
                       help="convert the authors' F-ViT mmdet detector to a Detectron2 checkpoint")
    s.add_argument("--input", required=True, help="F-ViT mmdet checkpoint (.pth)")
    s.add_argument("--output", required=True, help="Detectron2 checkpoint to write")
    s.add_argument("--model", default=None,
                   help="open_clip model config name or .json file of the CLIP tower "
                        "(default: inferred from the visual width)")
    s.add_argument("--save-embeddings", default=None, metavar="FILE",
                   help="also save roi_head.bbox_head.all_embeddings (a tensor) to FILE")
    s.add_argument("--no-strict", action="store_true",
                   help="write the output even if keys of the F-ViT model are missing")
    s = sub.add_parser("inspect", help="print the layout and key summary of a checkpoint")
    s.add_argument("--input", required=True)
    return p


def _inspect(path: str) -> dict:
    obj = read_mmdet_checkpoint(path)
    sd = unwrap_state_dict(obj)
    fvit = is_fvit_mmdet_state_dict(sd)
    if fvit:
        fmt = "F-ViT mmdet detector"
    elif any(k.startswith(FVIT_CLIP_PREFIX) for k in sd):
        fmt = "F-ViT Detectron2"
        sd = {k[len(FVIT_CLIP_PREFIX):] if k.startswith(FVIT_CLIP_PREFIX) else k: v
              for k, v in sd.items()}
    else:
        fmt = "CLIP"
    vsd, other = split_visual_state_dict(sd)
    roots = Counter(k.split(".")[0] for k in other)
    info = {
        "file": path,
        "format": fmt,
        "top_level": sorted(obj.keys()) if isinstance(obj, dict) else type(obj).__name__,
        "num_keys": len(sd),
        "visual_keys": len(vsd),
        "visual_layout": detect_visual_layout(vsd),
        "other_keys_by_root": dict(roots),
    }
    for k in ("pos_embed", "trunk.pos_embed", "positional_embedding", "head.weight"):
        if k in vsd:
            info[f"shape[{k}]"] = list(vsd[k].shape)
    if fvit:
        info["fvit_groups"] = fvit_key_groups(sd)
        try:
            info["fvit_model"] = infer_fvit_model_name(sd)
        except ValueError:
            info["fvit_model"] = None
        info["fvit_mask_head"] = any(k.startswith("roi_head.mask_head.") for k in sd)
    return info


def _fvit_from_mmdet(args) -> int:
    try:
        report = convert_fvit_checkpoint(
            args.input, args.output, model_name=args.model,
            save_embeddings=args.save_embeddings, strict=not args.no_strict,
        )
    except (RuntimeError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report)
    print(f"wrote {args.output} (Detectron2 F-ViT)")
    if args.save_embeddings:
        print(f"wrote {args.save_embeddings} (class embeddings, shape "
              f"{list(report.embeddings.shape)})")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "inspect":
        print(json.dumps(_inspect(args.input), indent=1))
        return 0
    if args.command == "fvit-from-mmdet":
        return _fvit_from_mmdet(args)
    to = "open_clip" if args.command == "to-open-clip" else "clipself"
    try:
        report = convert_clip_checkpoint(
            args.input, args.output, model_name=args.model, to=to,
            include_text=not args.visual_only, strict=not args.no_strict,
        )
    except (RuntimeError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report)
    print(f"wrote {args.output} ({to} layout)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
