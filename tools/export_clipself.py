#!/usr/bin/env python
"""Export a CLIPSelf training checkpoint as a CLIP checkpoint (alpha-ensemble of student and
teacher, docs/distillation.md §7), loadable by ``CLIPViT(pretrained=...)`` and ``TextClassifier``.

    python tools/export_clipself.py --config-file configs/CLIPSelf/X.py \
        --checkpoint output/.../model_final.pth --output clipself.pt [--alpha 0.7]
"""
import argparse
import os

from detectron2.config import LazyConfig

from clipself.distill import export_distilled


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True, help="the CLIPSelf training config")
    parser.add_argument("--checkpoint", required=True, help="model_*.pth of the run")
    parser.add_argument("--output", required=True)
    parser.add_argument("--alpha", type=float, default=None, help="default: model.alpha")
    parser.add_argument("--no-text", action="store_true", help="do not copy the text tower")
    args = parser.parse_args(argv)
    cfg = LazyConfig.load(args.config_file)
    student = cfg.model.student
    alpha = cfg.model.alpha if args.alpha is None else args.alpha
    pretrained = student.get("pretrained") or None
    text_from = pretrained if pretrained and os.path.isfile(pretrained) else None
    if args.no_text:
        text_from = None
    export_distilled(
        args.checkpoint, args.output, model_name=student.model_name, alpha=alpha,
        text_from=text_from,
    )
    print(f"wrote {args.output} (alpha={alpha})")


if __name__ == "__main__":
    main()
