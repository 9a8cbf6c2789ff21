#!/usr/bin/env python
"""Dump CLIP text embeddings of a vocabulary (docs/fvit.md §10) for F-ViT / region evaluation.

Examples::

    # COCO thing classes of a registered Detectron2 dataset, 63 ViLD templates, + background
    python tools/dump_text_embeddings.py --model EVA02-B-16 \\
        --pretrained EVA02_CLIP_B_psz16_s8B.pt --dataset coco_2017_val \\
        --output embeddings/coco_with_background_evaclip_vitb_16.pt

    # names from a JSON list (an entry may be a list of synonyms) or a text file (one per line)
    python tools/dump_text_embeddings.py --model toy.json --pretrained toy.pt \\
        --names classes.json --templates single --no-background --output toy_text.npy

    # SigLIP2 without access to the Hugging Face hub: its tokenizer saved to a folder first
    # (docs/open_vocabulary.md §13)
    python tools/dump_text_embeddings.py --model ViT-B-16-SigLIP2 --pretrained siglip2.bin \\
        --tokenizer siglip2_tokenizer/ --names classes.json --output siglip2_text.pt

``.pt`` output: dict raw class name -> (D,) float32 tensor, "background" last (the authors'
format); ``.npy`` output: a (K[+1], D) float32 array. Rows are unit-norm.
"""
import argparse
import json
import logging
import sys
from typing import List, Optional

from detectron2.data import MetadataCatalog

import clipself  # noqa: F401  (registers the project's datasets)
from clipself.modeling import HubUnavailableError, TextClassifier, save_text_embeddings


def read_class_names(path: str) -> list:
    """Class names from a JSON list (str or list of synonyms) or a text file, one per line."""
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        names = json.loads(text)
        if isinstance(names, dict):  # {"id": "name"} or {"name": ...}
            names = list(names.values())
        return names
    return [line.strip() for line in text.splitlines() if line.strip()]


def dataset_class_names(name: str, field: str) -> list:
    """Class names of a registered Detectron2 dataset (``MetadataCatalog``)."""
    names = MetadataCatalog.get(name).get(field, None)
    if not names:
        raise ValueError(f"dataset {name!r} has no metadata field {field!r}")
    return list(names)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="EVA02-B-16", help="open_clip config name or .json file")
    p.add_argument("--pretrained", default=None,
                   help="checkpoint file (authors' or open_clip layout) or open_clip tag")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--names", help="JSON list or text file of class names")
    src.add_argument("--dataset", help="registered Detectron2 dataset name")
    p.add_argument("--field", default="thing_classes", help="metadata field with --dataset")
    p.add_argument("--templates", default="vild",
                   help="'vild' (63 prompts), 'single' or a JSON file with a list of templates")
    p.add_argument("--no-background", action="store_true", help="do not append 'background'")
    p.add_argument("--output", required=True, help="output .pt or .npy")
    p.add_argument("--cache-dir", default=None, help="on-disk cache of text embeddings")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--no-strict", action="store_true", help="tolerate missing text keys")
    p.add_argument("--tokenizer", default=None,
                   help="directory of a saved Hugging Face tokenizer (SigLIP, SigLIP2, CLIPA, "
                        "...) for machines without access to the hub")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    names = read_class_names(args.names) if args.names else dataset_class_names(
        args.dataset, args.field)
    templates = args.templates
    if templates.endswith(".json"):
        with open(templates) as f:
            templates = json.load(f)
    clf = TextClassifier(
        args.model, pretrained=args.pretrained, templates=templates, cache_dir=args.cache_dir,
        device=args.device, batch_size=args.batch_size, strict_load=not args.no_strict,
        tokenizer=args.tokenizer,
    )
    background = not args.no_background
    try:
        emb = clf(names, background=background)
    except HubUnavailableError as e:  # the message says how to work offline
        print(f"error: {e}", file=sys.stderr)
        return 1
    save_text_embeddings(args.output, names, emb, background)
    print(f"wrote {args.output}: {emb.shape[0]} x {emb.shape[1]} "
          f"({len(names)} classes{' + background' if background else ''})")
    bias = "" if clf.logit_bias is None else f", logit_bias {clf.logit_bias:.4g} (sigmoid scores)"
    scale = "unknown" if clf.logit_scale is None else f"{clf.logit_scale:.4g}"
    print(f"text tower: logit_scale {scale}{bias}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
