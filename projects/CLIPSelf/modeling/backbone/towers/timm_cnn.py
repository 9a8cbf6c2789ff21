"""timm CNN / hybrid trunks inside open_clip's ``TimmModel`` whose head pools the last map before
any non-linearity across locations: ConvNeXt (``convnext_*``), FastViT-MCi (MobileCLIP /
MobileCLIP2 S0-S4) and Swin (docs/dense_features.md §9.5).

Layout: ``visual.trunk`` runs a stem and stages to an un-pooled map ``x`` (ConvNeXt: ``stem``,
``stages``, ``norm_pre``; FastViT: ``stem``, ``stages``, ``final_conv``; Swin: ``patch_embed``,
``layers``, ``norm``, channels-last), then its head (ConvNeXt: ``NormMlpClassifierHead`` =
global average pool, LayerNorm, ``pre_logits``, ``fc``; FastViT / Swin: ``ClassifierHead`` =
global average pool, ``fc``), then open_clip's ``visual.head`` (``proj`` Linear or ``mlp``).

Dense map per location ``t`` (the tower's head applied to the un-pooled map; there is no token
mixing to modify, so only ``last_block_mode="v"`` applies):

- ConvNeXt: ``f_t = visual.head(fc(pre_logits(LN(x_t))))`` (pooled: the same with ``LN`` of the
  mean, ``LN(mean_t x_t)``);
- FastViT / Swin: ``f_t = visual.head(fc(x_t))`` (pooled: ``visual.head(fc(mean_t x_t))``; with a
  linear ``visual.head`` the pooled embedding is exactly the mean of the dense map).

Swin's shifted-window attention masks are built for its native input size, so Swin takes only
that size (a clear error otherwise).
"""
from typing import Dict, List, Sequence, Tuple

import torch
from timm.layers import ClassifierHead, NormMlpClassifierHead
from timm.models.convnext import ConvNeXt
from timm.models.fastvit import FastVit
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from .base import ConvTower, TowerUnsupported, run_stage

__all__ = ["TimmCNNTower"]


class TimmCNNTower(ConvTower):
    family = "timm_cnn"
    _trunks = (ConvNeXt, FastVit, SwinTransformer)

    @classmethod
    def matches(cls, visual: nn.Module) -> bool:
        return isinstance(getattr(visual, "trunk", None), cls._trunks)

    def __init__(self, visual: nn.Module, embed_dim: int):
        super().__init__(visual, embed_dim)
        t = visual.trunk
        head = t.head
        if not isinstance(head, (ClassifierHead, NormMlpClassifierHead)):
            raise TowerUnsupported(
                f"timm head {type(head).__name__} has no per-location form here"
            )
        pool_type = getattr(head.global_pool, "pool_type", "avg")
        if pool_type != "avg":
            raise TowerUnsupported(
                f"global_pool={pool_type!r}: only average pooling keeps a per-location head "
                "consistent with the pooled embedding"
            )
        fc = head.fc
        if not isinstance(fc, (nn.Identity, nn.Linear)):
            raise TowerUnsupported(f"classifier {type(fc).__name__} has no per-location form")
        if getattr(t, "fork_feat", False):
            raise TowerUnsupported("FastViT with fork_feat=True has no classification head")
        self._nhwc = isinstance(t, SwinTransformer)
        info = t.feature_info
        self.stage_strides = [int(i["reduction"]) for i in info]
        self.stage_channels = [int(i["num_chs"]) for i in info]
        self.stride = self.stage_strides[-1]
        size = getattr(visual, "image_size", None) or (224, 224)
        size = (size, size) if isinstance(size, int) else tuple(size)
        self.image_size = (int(size[0]), int(size[1]))
        self.pretrain_grid = (self.image_size[0] // self.stride, self.image_size[1] // self.stride)

    def check_size(self, height: int, width: int) -> None:
        if self._nhwc and (height, width) != self.image_size:
            raise ValueError(
                f"Swin towers take only their native input size {self.image_size[0]}x"
                f"{self.image_size[1]} (window attention masks are built for it), got "
                f"{height}x{width}"
            )

    def _stage_modules(self) -> Tuple[nn.Module, Sequence[nn.Module], nn.Module]:
        t = self.visual.trunk
        if isinstance(t, ConvNeXt):
            return t.stem, t.stages, t.norm_pre
        if isinstance(t, FastVit):
            return t.stem, t.stages, t.final_conv
        return t.patch_embed, t.layers, t.norm

    def forward_stages(
        self, x: torch.Tensor, taps: Sequence[int] = (), checkpoint: bool = False
    ) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
        stem, stages, final = self._stage_modules()
        x = stem(x)
        out = {}
        for i, stage in enumerate(stages):
            x = run_stage(stage, x, checkpoint)
            if i in taps:
                out[i] = x.permute(0, 3, 1, 2) if self._nhwc else x
        x = final(x)
        return (x.permute(0, 3, 1, 2) if self._nhwc else x), out

    def dense(self, fmap, pos=None, mode="v", bias=None, impl="sdpa") -> torch.Tensor:
        """(B, C, h, w) -> (B, D, h, w): the trunk head's per-location form, then
        ``visual.head`` (module docstring)."""
        head = self.visual.trunk.head
        if isinstance(head, NormMlpClassifierHead):
            z = head.norm(fmap).permute(0, 2, 3, 1)  # LayerNorm2d per location -> (B, h, w, C)
            z = head.pre_logits(z)
        else:
            z = fmap.permute(0, 2, 3, 1)  # (B, h, w, C)
        z = self.visual.head(head.fc(head.drop(z)))  # (B, h, w, D)
        return z.permute(0, 3, 1, 2)

    def pool(self, fmap: torch.Tensor, pos=None) -> torch.Tensor:
        t = self.visual.trunk
        x = fmap.permute(0, 2, 3, 1) if self._nhwc else fmap
        return self.visual.head(t.forward_head(x))

    def stem_params(self) -> List[nn.Parameter]:
        return list(self._stage_modules()[0].parameters())

    def stage_module_names(self) -> List[List[str]]:
        """``trunk.stages.i`` (Swin: ``trunk.layers.i``); FastViT's ``final_conv`` joins the last
        stage."""
        t = self.visual.trunk
        name = "layers" if self._nhwc else "stages"
        groups = [[f"trunk.{name}.{i}"] for i in range(len(getattr(t, name)))]
        if isinstance(t, FastVit):
            groups[-1].append("trunk.final_conv")
        return groups
