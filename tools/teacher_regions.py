#!/usr/bin/env python
"""The teacher's view: zero-shot accuracy of a toy CLIP on the regions each CLIPSelf mode uses.

Object crops (box x1.5), proposals (the world's object boxes, cut as the proposals mode cuts
them) and the patches mode's grid cells (labelled by their dominant class, split by purity) on
the world's validation scenes (docs/miniature.md §3)::

    python tools/teacher_regions.py --checkpoint output/demo/toy_clip/toy_clip.pt \\
        --num-scenes 100 --output teacher_regions.json

Prints a Markdown table; ``--output`` also writes the numbers as JSON.
"""
import argparse
import json
from typing import List, Optional

from clipself.engine.teacher_regions import analyze_teacher_regions, format_teacher_regions
from clipself.engine.toy_clip import TOY_CLIP_NAME


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="open_clip state dict of the toy CLIP")
    p.add_argument("--model-name", default=TOY_CLIP_NAME)
    p.add_argument("--seed", type=int, default=0, help="world seed (make demo's --seed)")
    p.add_argument("--num-scenes", type=int, default=100, help="validation scenes")
    p.add_argument("--grids-per-scene", type=int, default=4,
                   help="random grids drawn per scene (each at most 20 cells)")
    p.add_argument("--output", default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    result = analyze_teacher_regions(
        args.checkpoint, model_name=args.model_name, seed=args.seed,
        num_scenes=args.num_scenes, grids_per_scene=args.grids_per_scene)
    print("\n".join(format_teacher_regions(result["accuracy"])))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
