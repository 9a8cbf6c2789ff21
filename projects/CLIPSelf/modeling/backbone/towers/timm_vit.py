"""timm ``VisionTransformer`` trunks inside open_clip's ``TimmModel`` (SigLIP / SigLIP2,
MobileCLIP-B and MobileCLIP2-B (conv stem), MobileCLIP2-L-14 (``vit_large_patch14_clip``),
ViTamin (MBConv stem), ``vit_medium_patch16_gap_256``; docs/dense_features.md §9.2).

Layout: ``visual.trunk`` = ``patch_embed`` (``PatchEmbed``, or ``HybridEmbed`` whose conv stem
counts as one patch of its total stride), optional ``cls_token`` / ``reg_token``, ``pos_embed``
(covering the prefix tokens unless ``no_embed_class``), ``norm_pre``, ``blocks`` (pre-norm
``Block`` or post-norm ``ResPostBlock`` with timm ``Attention``), ``norm``, the pooling
(``global_pool`` "token" / "avg", or "map" = ``attn_pool``, an ``AttentionPoolLatent``),
``fc_norm``, ``head``; then open_clip's ``visual.head`` (projection, may be empty).

Dense map per patch token ``t`` (x = final tokens after the modified last block,
``Head(z) = visual.head(trunk.head(fc_norm(z)))``):

- "token" / "avg" pooling: ``f_t = Head(norm(x_t))``;
- "map" (SigLIP, no class token; pooled embedding = ``Head(MAP(norm(x)))`` with
  ``MAP(z) = a + mlp(norm_p(a))``, ``a = proj(sum_t s_t (W_v z_t + b_v))``, ``s`` the latent
  query's attention): the value path of the pooling head per token,
  ``a_t = proj(W_v z_t + b_v)``, ``f_t = Head(a_t + mlp(norm_p(a_t)))``, ``z = norm(x)``
  (:func:`map_head_per_location`). The linear part is what each token contributes
  (``a = proj(concat_h sum_t s^h_t v^h_t)``, ``= sum_t s_t a_t`` when the heads attend alike);
  the MLP residual is applied to each ``a_t`` as it is to ``a``.

``pool`` is timm's own ``forward_head(norm(x))`` + ``visual.head``, so ``encode_image`` equals
``visual(x)``.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from timm.layers import Attention, AttentionPoolLatent, HybridEmbed
from timm.models.vision_transformer import Block, ResPostBlock, VisionTransformer
from torch import nn

from ... import dense_ops as ops
from .base import TowerUnsupported, TransformerTower

__all__ = ["TimmViTTower", "map_head_per_location"]


def map_head_per_location(pool: AttentionPoolLatent, z: torch.Tensor) -> torch.Tensor:
    """The value path of timm's MAP head applied to every token: (B, M, C) -> (B, M, C_out),
    ``a_t = proj(W_v z_t + b_v)``, then ``a_t + mlp(norm(a_t))`` (module docstring)."""
    E = pool.kv.weight.shape[0] // 2  # kv rows: [keys | values]
    b = pool.kv.bias
    a = ops.attention_pool_value(
        z, pool.kv.weight[E:], None if b is None else b[E:], pool.proj.weight, pool.proj.bias
    )
    a = pool.proj_drop(a)
    if pool.mlp is not None:
        a = a + pool.mlp(pool.norm(a))
    return a


def _check_map_head(pool: Optional[nn.Module]) -> None:
    if pool is None:
        return
    if not isinstance(pool, AttentionPoolLatent):
        raise TowerUnsupported(
            f"pooling head {type(pool).__name__} has no per-location form here (only timm's "
            "AttentionPoolLatent 'map' head)"
        )
    if pool.pos_embed is not None:
        raise TowerUnsupported(
            "an AttentionPoolLatent with its own fixed-size positional embedding has no "
            "per-location form at other grids"
        )


def _patch_geometry(pe: nn.Module) -> Tuple[int, Tuple[int, int]]:
    """(pixels per token, native grid) of a timm ``PatchEmbed`` or ``HybridEmbed``."""
    if isinstance(pe, HybridEmbed):
        ps = tuple(pe.feat_ratio(as_scalar=False))
    else:
        ps = tuple(pe.patch_size)
    if ps[0] != ps[1]:
        raise TowerUnsupported(f"non-square patches {ps} are not supported")
    return int(ps[0]), tuple(int(g) for g in pe.grid_size)


class TimmViTTower(TransformerTower):
    family = "timm_vit"
    _block_types: Tuple[type, ...] = (Block, ResPostBlock)
    _post_norm_types: Tuple[type, ...] = (ResPostBlock,)
    _attn_types: Tuple[type, ...] = (Attention,)
    _pools = ("token", "avg", "map")

    @classmethod
    def matches(cls, visual: nn.Module) -> bool:
        return isinstance(getattr(visual, "trunk", None), VisionTransformer)

    def __init__(self, visual: nn.Module, embed_dim: int):
        super().__init__(visual, embed_dim)
        t = visual.trunk
        self._check_blocks(t)
        if t.global_pool not in self._pools:
            raise TowerUnsupported(
                f"timm global_pool={t.global_pool!r}: the dense map needs a pooling with a "
                f"per-location form ({', '.join(self._pools)})"
            )
        _check_map_head(getattr(t, "attn_pool", None))
        self.patch_size, self.pretrain_grid = _patch_geometry(t.patch_embed)
        self.width = t.embed_dim
        self.num_heads = t.blocks[0].attn.num_heads
        self.num_prefix_tokens = int(t.num_prefix_tokens)
        self.has_class_token = t.cls_token is not None

    def _check_blocks(self, trunk: nn.Module) -> None:
        for i, blk in enumerate(trunk.blocks):
            if type(blk) not in self._block_types:
                raise TowerUnsupported(
                    f"timm block {type(blk).__name__} (block {i}) is not supported: the value "
                    f"path is defined for {', '.join(b.__name__ for b in self._block_types)}"
                )
            if type(blk.attn) not in self._attn_types:
                raise TowerUnsupported(
                    f"timm attention {type(blk.attn).__name__} (block {i}) is not supported"
                )
            if getattr(blk.attn, "gate", None) is not None:
                raise TowerUnsupported("gated attention is not supported")

    @property
    def blocks(self) -> Sequence[nn.Module]:
        return self.visual.trunk.blocks

    # ------------------------------------------------------------------ tokens in
    def pos_param(self) -> Tuple[Optional[torch.Tensor], int]:
        t = self.visual.trunk
        return t.pos_embed, (0 if t.no_embed_class else self.num_prefix_tokens)

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, h*w, C) patch tokens (bypasses timm's fixed-size check)."""
        pe = self.visual.trunk.patch_embed
        if isinstance(pe, HybridEmbed):
            x = pe.backbone(x)
            if isinstance(x, (list, tuple)):
                x = x[-1]
            return pe.proj(x).flatten(2).transpose(1, 2)
        t = pe.proj(x).flatten(2).transpose(1, 2)  # (B, h*w, C)
        return pe.norm(t)

    def embed(self, x: torch.Tensor, pos: Optional[torch.Tensor]) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N, C): [cls, reg, patches] + positions, ``norm_pre`` (timm's
        ``_pos_embed``; patch dropout is not applied: dense maps need every patch)."""
        tr = self.visual.trunk
        t = self._patches(x)
        B = t.shape[0]
        prefix = [p.expand(B, -1, -1).to(t.dtype) for p in (tr.cls_token, tr.reg_token)
                  if p is not None]
        if tr.no_embed_class:
            t = t + pos.to(t.dtype) if pos is not None else t
            t = torch.cat(prefix + [t], dim=1) if prefix else t
        else:
            t = torch.cat(prefix + [t], dim=1) if prefix else t
            t = t + pos.to(t.dtype) if pos is not None else t
        return tr.norm_pre(tr.pos_drop(t))

    # ------------------------------------------------------------------ blocks
    def _post_norm(self, blk: nn.Module) -> bool:
        return type(blk) in self._post_norm_types

    def attn_input(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return x if self._post_norm(blk) else blk.norm1(x)

    def _qkv_bias(self, attn: nn.Module) -> Optional[torch.Tensor]:
        return attn.qkv.bias

    def qkv(self, blk: nn.Module, y: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        B, N, _ = y.shape
        attn = blk.attn
        qkv = F.linear(y, attn.qkv.weight, self._qkv_bias(attn))
        q, k, v = qkv.reshape(B, N, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        return attn.q_norm(q), attn.k_norm(k), v

    def value(self, blk: nn.Module, y: torch.Tensor) -> torch.Tensor:
        B, N, _ = y.shape
        attn = blk.attn
        n = attn.qkv.weight.shape[0] // 3
        b = self._qkv_bias(attn)
        v = F.linear(y, attn.qkv.weight[2 * n:], None if b is None else b[2 * n:])
        return v.reshape(B, N, attn.num_heads, -1).transpose(1, 2)

    def _merge(self, attn: nn.Module, o: torch.Tensor) -> torch.Tensor:
        """(B, H, N, d) -> (B, N, C): merge heads, inner norm, output projection."""
        B, H, N, d = o.shape
        o = o.transpose(1, 2).reshape(B, N, H * d)
        return attn.proj_drop(attn.proj(attn.norm(o)))

    def attn_output(self, blk: nn.Module, o: torch.Tensor) -> torch.Tensor:
        a = self._merge(blk.attn, o)
        if self._post_norm(blk):
            return blk.drop_path1(blk.norm1(a))
        return blk.drop_path1(blk.ls1(a))

    def mlp_branch(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self._post_norm(blk):
            return blk.drop_path2(blk.norm2(blk.mlp(x)))
        return blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))

    # ------------------------------------------------------------------ heads
    def tokens_to_clip(self, t: torch.Tensor) -> torch.Tensor:
        """(B, M, C) -> (B, M, D): final norm, the MAP head's value path (if any), fc_norm,
        timm head, open_clip head."""
        tr = self.visual.trunk
        z = tr.norm(t)
        if getattr(tr, "attn_pool", None) is not None:
            z = map_head_per_location(tr.attn_pool, z)
        z = tr.head(tr.head_drop(tr.fc_norm(z)))
        return self.visual.head(z)

    def pool(self, t: torch.Tensor) -> torch.Tensor:
        tr = self.visual.trunk
        return self.visual.head(tr.forward_head(tr.norm(t)))

    def stem_params(self) -> Tuple[List[nn.Parameter], List[nn.Parameter]]:
        t = self.visual.trunk
        stem = list(t.patch_embed.parameters()) + list(t.norm_pre.parameters())
        stem += [p for p in (t.cls_token, getattr(t, "reg_token", None)) if p is not None]
        pos = [t.pos_embed] if t.pos_embed is not None else []
        return stem, pos
