#!/usr/bin/env python
"""Convert CLIP/CLIPSelf checkpoints between the authors' EVA-CLIP layout and open_clip's.

Examples::

    # the authors' released CLIPSelf weights -> open_clip layout (visual.trunk.*, text.*)
    python tools/convert_checkpoint.py to-open-clip --model EVA02-B-16 \\
        --input eva_vitb16_coco_clipself_patches.pt --output clipself_b16_openclip.pt

    # an open_clip / project checkpoint -> the authors' layout ({"state_dict": visual.*})
    python tools/convert_checkpoint.py to-clipself --model EVA02-B-16 \\
        --input clipself_b16_openclip.pt --output eva_vitb16_clipself.pt

    # what is in a file
    python tools/convert_checkpoint.py inspect --input eva_vitb16_coco_clipself_patches.pt

Missing and unexpected visual keys are printed; ``--no-strict`` writes the output anyway.
"""
import argparse
import json
import logging
import sys
from collections import Counter
from typing import List, Optional


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
    s = sub.add_parser("inspect", help="print the layout and key summary of a checkpoint")
    s.add_argument("--input", required=True)
    return p


def _inspect(path: str) -> dict:
    from clipself.checkpoint.clip_convert import (
        detect_visual_layout,
        read_checkpoint,
        split_visual_state_dict,
        unwrap_state_dict,
    )

    obj = read_checkpoint(path)
    sd = unwrap_state_dict(obj)
    vsd, other = split_visual_state_dict(sd)
    roots = Counter(k.split(".")[0] for k in other)
    info = {
        "file": path,
        "top_level": sorted(obj.keys()) if isinstance(obj, dict) else type(obj).__name__,
        "num_keys": len(sd),
        "visual_keys": len(vsd),
        "visual_layout": detect_visual_layout(vsd),
        "other_keys_by_root": dict(roots),
    }
    for k in ("pos_embed", "trunk.pos_embed", "positional_embedding", "head.weight"):
        if k in vsd:
            info[f"shape[{k}]"] = list(vsd[k].shape)
    return info


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "inspect":
        print(json.dumps(_inspect(args.input), indent=1))
        return 0
    from clipself.checkpoint.clip_convert import convert_clip_checkpoint

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
