"""F-ViT backbone: a frozen CLIP ViT, upsampling adapters and an FPN (docs/fvit.md §2-§3).

The four tapped ViT maps (all at the patch stride p) become a pyramid with strides p/4, p/2, p,
2p: ``interpolate1`` = ConvT-norm-GELU-ConvT, ``interpolate2`` = ConvT, ``interpolate3`` =
identity, ``interpolate4`` = 2x2 max-pool. A Detectron2 FPN (norm on laterals and outputs,
P6 = stride-2 subsampling of P5) follows.

Detectron2's ``ShapeSpec`` strides are ints and its FPN names levels by ``log2(stride)``, so the
shapes report the nominal strides of a patch-16 model (4, 8, 16, 32 -> p2..p6) for every patch
size; the true (possibly fractional: 3.5, 7, 14, 28, 56 for patch 14) strides are in
``strides_float`` and are what anchors and poolers must use (:class:`clipself.modeling.fvit.FViT`
checks it).
"""
from typing import Dict

import torch
import torch.nn.functional as F
from detectron2.layers import get_norm
from detectron2.modeling.backbone import FPN, Backbone
from torch import nn

from .clip_vit import CLIPViT

__all__ = ["FViTBackbone", "FViTFPN", "NOMINAL_STRIDES"]

NOMINAL_STRIDES = (4, 8, 16, 32)  # res2..res5, as for a patch-16 ViT


class FViTBackbone(Backbone):
    """Frozen CLIP ViT taps -> 4-level pyramid (``res2``..``res5``), plus ``clip_dense`` in eval.

    The ViT runs without gradients and in eval mode (``freeze="frozen"``); in eval mode the same
    token pass also yields the CLIP dense map (docs/fvit.md §2, the 5th output used by the score
    ensemble, docs/fvit.md §6).
    """

    def __init__(self, *, clip: CLIPViT, norm: str = "SyncBN", dense_in_eval: bool = True):
        """
        Args:
            clip (CLIPViT): the tower, with exactly 4 ``out_indices`` (B/16: [3, 5, 7, 11],
                L/14: [6, 10, 14, 23]) and ``freeze="frozen"``.
            norm (str): Detectron2 norm of ``interpolate1`` ("SyncBN" as the paper, "BN" on one
                device, "naiveSyncBN" for CPU multi-process).
            dense_in_eval (bool): return ``clip_dense`` when not training.
        """
        super().__init__()
        if len(clip.out_indices) != 4:
            raise ValueError(f"F-ViT taps 4 ViT blocks; got out_indices={clip.out_indices}")
        if clip.freeze != "frozen":
            raise ValueError(f"F-ViT keeps the CLIP ViT frozen; got freeze={clip.freeze!r}")
        self.clip = clip
        C, p = clip.width, clip.patch_size
        self.interpolate1 = nn.Sequential(
            nn.ConvTranspose2d(C, C, kernel_size=2, stride=2),
            get_norm(norm, C),
            nn.GELU(),
            nn.ConvTranspose2d(C, C, kernel_size=2, stride=2),
        )
        self.interpolate2 = nn.Sequential(nn.ConvTranspose2d(C, C, kernel_size=2, stride=2))
        self.interpolate3 = nn.Identity()
        self.interpolate4 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.dense_in_eval = dense_in_eval
        self._taps = [f"block{i}" for i in clip.out_indices]
        self._out_features = ["res2", "res3", "res4", "res5"]
        self._out_feature_channels = {n: C for n in self._out_features}
        self._out_feature_strides = dict(zip(self._out_features, NOMINAL_STRIDES))
        self.strides_float = {
            n: p * f for n, f in zip(self._out_features, (0.25, 0.5, 1.0, 2.0))
        }
        self.strides_float["clip_dense"] = float(p)

    @property
    def size_divisibility(self) -> int:
        return 2 * self.clip.patch_size  # an even token grid (max-pool and FPN top-down)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        Args:
            x (Tensor): (B, 3, H, W) normalised images, H and W multiples of 2 x patch.
        Returns:
            dict: ``res2``..``res5`` (B, C, 4h, 4w) .. (B, C, h/2, w/2), h = H / patch;
            ``clip_dense`` (B, D, h, w) L2-normalised, in eval mode only.
        """
        dense = self.dense_in_eval and not self.training
        with torch.no_grad():
            taps = self.clip(x, dense=dense)
        maps = [taps[n].detach() for n in self._taps]
        adapters = (self.interpolate1, self.interpolate2, self.interpolate3, self.interpolate4)
        out = {n: a(m) for n, a, m in zip(self._out_features, adapters, maps)}
        if dense:
            out["clip_dense"] = taps["clip_dense"]
        return out


class FViTFPN(FPN):
    """Detectron2 ``FPN`` that keeps the true float strides and passes ``clip_dense`` through."""

    @property
    def strides_float(self) -> Dict[str, float]:
        """Level name -> true stride (``p2``..``p6``, and ``clip_dense``)."""
        bottom = self.bottom_up.strides_float
        out = {f"p{k + 2}": bottom[n] for k, n in enumerate(self.in_features)}
        out[f"p{len(self.in_features) + 2}"] = 2 * bottom[self.in_features[-1]]
        out["clip_dense"] = bottom["clip_dense"]
        return out

    @property
    def size_divisibility(self) -> int:
        return self.bottom_up.size_divisibility

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return {"size_divisibility": self.size_divisibility, "square_size": self._square_pad}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """As ``FPN.forward`` (lateral/output convs, nearest top-down, top block), plus
        ``clip_dense`` from the bottom-up when present."""
        bottom = self.bottom_up(x)
        prev = self.lateral_convs[0](bottom[self.in_features[-1]])
        results = [self.output_convs[0](prev)]
        for idx in range(1, len(self.lateral_convs)):
            lateral = self.lateral_convs[idx](bottom[self.in_features[-idx - 1]])
            prev = lateral + F.interpolate(prev, scale_factor=2.0, mode="nearest")
            if self._fuse_type == "avg":
                prev = prev / 2
            results.insert(0, self.output_convs[idx](prev))
        if self.top_block is not None:
            if self.top_block.in_feature in bottom:
                top_in = bottom[self.top_block.in_feature]
            else:
                top_in = results[self._out_features.index(self.top_block.in_feature)]
            results.extend(self.top_block(top_in))
        out = dict(zip(self._out_features, results))
        if "clip_dense" in bottom:
            out["clip_dense"] = bottom["clip_dense"]
        return out
