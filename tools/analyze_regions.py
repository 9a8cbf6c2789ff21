#!/usr/bin/env python
"""Colour vs shape: where the region recognition of a CLIPSelf model fails on the synthetic world.

Runs a region-recognition config (``configs/Synthetic/clipself_toy_*.py``) over its test split and
splits the top-1 accuracy of thing regions (boxes, masks, image crops) into colour and shape
hits, with the shape confusion matrix. Accuracies are over regions (not per-class means, unlike
the evaluator)::

    DETECTRON2_DATASETS=output/demo/datasets python tools/analyze_regions.py \\
        --config-file configs/Synthetic/clipself_toy_proposals.py \\
        --checkpoint output/demo/clipself_proposals/model_final.pth \\
        model.student.pretrained=output/demo/toy_clip/toy_clip.pt

Without ``--checkpoint`` the model of the config is evaluated as built (the original toy CLIP).
"""
import argparse
import json
from typing import List, Optional

import torch
from detectron2.config import LazyConfig, instantiate

from clipself.engine import Checkpointer, apply_overrides
from clipself.synthetic import SHAPES
from clipself.synthetic.analysis import attribute_accuracy

KINDS = ("boxes", "masks", "crops")


@torch.no_grad()
def collect(model, loader, text: torch.Tensor) -> dict:
    """Top-1 predictions of the thing regions: {"labels": (R,), kind: (R,)}."""
    rows = {"labels": [], **{k: [] for k in KINDS}}
    for batch in loader:
        outputs = model(batch)
        for inp, out in zip(batch, outputs):
            things = inp["isthing"]
            rows["labels"].append(inp["labels"][things])
            for k in KINDS:
                rows[k].append((out[k].float()[things] @ text.T).argmax(dim=1))
    return {k: torch.cat(v) for k, v in rows.items()}


def format_confusion(confusion: torch.Tensor) -> List[str]:
    head = "| true \\ predicted | " + " | ".join(SHAPES) + " | stuff |"
    lines = [head, "|---" * (len(SHAPES) + 2) + "|"]
    for name, row in zip(SHAPES, confusion.tolist()):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return lines


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config-file", required=True)
    p.add_argument("--checkpoint", default=None, help="a train_net.py checkpoint (model_*.pth)")
    p.add_argument("--output", default=None, help="also write the results as JSON here")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides key=value")
    args = p.parse_args(argv)

    cfg = apply_overrides(LazyConfig.load(args.config_file), args.opts)
    model = instantiate(cfg.model).eval()
    if args.checkpoint:
        Checkpointer(model).load(args.checkpoint)
    evaluator = instantiate(cfg.dataloader.evaluator)  # holds the class names and embeddings
    preds = collect(model, instantiate(cfg.dataloader.test), evaluator.text_embeddings)
    results = {}
    for kind in KINDS:
        r = attribute_accuracy(preds[kind], preds["labels"], evaluator.class_names)
        results[kind] = {**{k: round(v, 2) for k, v in r.items() if k != "shape_confusion"},
                         "shape_confusion": r["shape_confusion"].tolist()}
        print(f"\n{kind}: top-1 {r['top1']:.1f}%, colour right {r['colour']:.1f}%, "
              f"shape right {r['shape']:.1f}% ({len(preds['labels'])} thing regions)")
        print("\n".join(format_confusion(r["shape_confusion"])))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
