#!/usr/bin/env python
"""K-Means maps of CLIP dense features, side by side for several checkpoints (paper Figure 4).

    python tools/visualize_kmeans.py --model EVA02-B-16 \
        --checkpoint EVA02_CLIP_B_psz16_s8B.pt eva_vitb16_coco_clipself_patches.pt \
        --labels original CLIPSelf --input a.jpg b.jpg --size 1024 --k 8 --output kmeans.png

Each row is one image: the input, then one K-Means map per checkpoint (dense features of
``CLIPViT.dense_features``; the padding of the square input is excluded and drawn black).
"""
import argparse
import os
from typing import List, Optional, Sequence

import torch
from PIL import Image

from clipself.data.clip_transforms import resize_longest_pad
from clipself.modeling.backbone import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD, CLIPViT
from clipself.utils.visualize import kmeans_map, side_by_side


@torch.no_grad()
def kmeans_panel(
    model_name,
    checkpoints: Sequence[Optional[str]],
    labels: Sequence[str],
    images: Sequence[str],
    *,
    size: int,
    k: int,
    cell: int = 256,
) -> Image.Image:
    """The picture: one row per image, columns = input + one K-Means map per checkpoint."""
    mean = torch.tensor(CLIP_PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_PIXEL_STD).view(3, 1, 1)
    inputs, valid = [], []
    for path in images:
        img = Image.open(path).convert("RGB")
        x, scale = resize_longest_pad(img, size)
        inputs.append(((x.float() - mean) / std, Image.fromarray(x.permute(1, 2, 0).numpy())))
        valid.append((round(img.height * scale), round(img.width * scale)))
    rows: List[List[Image.Image]] = [[img] for _, img in inputs]
    for ckpt in checkpoints:
        model = CLIPViT(model_name, pretrained=ckpt or None).eval()
        dense = model.dense_features(torch.stack([x for x, _ in inputs]))  # (B, D, h, w)
        patch = size / dense.shape[-1]
        for i, (hv, wv) in enumerate(valid):
            vh, vw = max(1, round(hv / patch)), max(1, round(wv / patch))
            rows[i].append(kmeans_map(dense[i], k, valid_hw=(vh, vw), out_size=(size, size)))
    return side_by_side(rows, ["input"] + list(labels), cell=cell)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="open_clip model config name or .json")
    parser.add_argument("--checkpoint", nargs="+", required=True,
                        help="CLIP checkpoints ('none' = random init)")
    parser.add_argument("--labels", nargs="*", default=None, help="column titles")
    parser.add_argument("--input", nargs="+", required=True, help="images")
    parser.add_argument("--size", type=int, default=1024, help="longest side (padded square)")
    parser.add_argument("--k", type=int, default=8, help="clusters")
    parser.add_argument("--cell", type=int, default=256, help="pixels per picture cell")
    parser.add_argument("--output", required=True, help="PNG file")
    args = parser.parse_args(argv)
    ckpts = [None if c.lower() == "none" else c for c in args.checkpoint]
    labels = args.labels or [os.path.basename(c) if c else "random" for c in ckpts]
    if len(labels) != len(ckpts):
        parser.error("--labels needs one title per --checkpoint")
    panel = kmeans_panel(
        args.model, ckpts, labels, args.input, size=args.size, k=args.k, cell=args.cell
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    panel.save(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
