"""open_clip's native ``VisionTransformer`` (OpenAI CLIP, OpenCLIP, CLIPA, CoCa, NLLB/MT5/RoBERTa
towers; docs/dense_features.md §1, §9.1).

Layout: ``conv1`` (patch embedding), ``class_embedding``, ``positional_embedding``, ``ln_pre``,
``transformer.resblocks`` (``ResidualAttentionBlock``: ``nn.MultiheadAttention`` with a fused
``in_proj``, or ``CustomResidualAttentionBlock``: open_clip ``Attention`` with optional q/k LNs,
head scale, inner LN and ``ln_attn``), ``ln_post``, ``proj``; CoCa adds ``attn_pool``
(``AttentionalPooler``). Every variant has one class token.

Dense map per patch token ``t`` (x = final tokens after the modified last block):

- class-token pool (``pool_type="tok"``) and average pool (``"avg"``, also with
  ``final_ln_after_pool``, CLIPA): ``f_t = ln_post(x_t) @ proj``;
- CoCa attentional pooler (``attentional_pool=True``; pooled embedding =
  ``ln_post(AttnPool(x)[query 0]) @ proj``): the pooler's value path per token,
  ``f_t = ln_post(W_o (W_v ln_k(x_t) + b_v) + b_o) @ proj`` (``dense_ops.attention_pool_value``).

``pool`` is open_clip's own ``_pool`` + ``proj``, so ``encode_image`` equals ``visual(x)`` (the
pooled part of CoCa's ``(pooled, tokens)`` output).
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ... import dense_ops as ops
from .base import TowerUnsupported, TransformerTower

__all__ = ["OpenAIViTTower", "mha_value_weights"]


def mha_value_weights(mha: nn.MultiheadAttention) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(W_v (E, C_v), b_v (E,) or None) of an ``nn.MultiheadAttention`` (fused or separate
    projections)."""
    E = mha.embed_dim
    w = mha.in_proj_weight[2 * E:] if mha._qkv_same_embed_dim else mha.v_proj_weight
    b = None if mha.in_proj_bias is None else mha.in_proj_bias[2 * E:]
    return w, b


class OpenAIViTTower(TransformerTower):
    family = "openai"

    @classmethod
    def matches(cls, visual: nn.Module) -> bool:
        return hasattr(visual, "conv1") and hasattr(visual, "transformer")

    def __init__(self, visual: nn.Module, embed_dim: int):
        super().__init__(visual, embed_dim)
        v = visual
        if getattr(v, "attn_pool_contrastive", None) is not None:
            raise TowerUnsupported(
                f"attentional_pool={v.attn_pool_type!r} (separate contrastive pooler) is marked "
                "untested in open_clip and has no defined dense path here; use "
                "attentional_pool=True (CoCa) or a class-token tower"
            )
        attn = v.transformer.resblocks[0].attn
        if getattr(attn, "logit_scale", None) is not None:
            raise TowerUnsupported(
                "scaled cosine attention (scaled_cosine_attn=True) is not supported: the "
                "last-block modes assume dot-product logits"
            )
        ps = tuple(v.patch_size)
        if ps[0] != ps[1]:
            raise TowerUnsupported(f"non-square patches {ps} are not supported")
        self.patch_size = int(ps[0])
        self.pretrain_grid = tuple(v.grid_size)
        self.width = v.transformer.width
        self.num_heads = attn.num_heads
        self.num_prefix_tokens = 1
        self.has_class_token = True

    @property
    def blocks(self) -> Sequence[nn.Module]:
        return self.visual.transformer.resblocks

    # ------------------------------------------------------------------ tokens in
    def pos_param(self) -> Tuple[Optional[torch.Tensor], int]:
        return self.visual.positional_embedding, 1

    def embed(self, x: torch.Tensor, pos: Optional[torch.Tensor]) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1 + h*w, C): [cls, patches] + positions, ``ln_pre``."""
        v = self.visual
        B = x.shape[0]
        t = v.conv1(x).flatten(2).transpose(1, 2)  # (B, h*w, C)
        cls = v.class_embedding.reshape(1, 1, -1).expand(B, -1, -1).to(t.dtype)
        t = torch.cat([cls, t], dim=1) + pos.to(t.dtype)
        return v.ln_pre(t)

    # ------------------------------------------------------------------ blocks
    def attn_input(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return blk.ln_1(x)

    def qkv(self, blk: nn.Module, y: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        B, N, _ = y.shape
        attn = blk.attn
        qkv = F.linear(y, attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.reshape(B, N, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        if hasattr(attn, "ln_q"):  # open_clip CustomResidualAttentionBlock
            q, k = attn.ln_q(q), attn.ln_k(k)
        return q, k, v

    def value(self, blk: nn.Module, y: torch.Tensor) -> torch.Tensor:
        B, N, _ = y.shape
        attn = blk.attn
        w, b = attn.in_proj_weight, attn.in_proj_bias
        n = w.shape[0] // 3
        v = F.linear(y, w[2 * n:], None if b is None else b[2 * n:])
        return v.reshape(B, N, attn.num_heads, -1).transpose(1, 2)

    def attn_output(self, blk: nn.Module, o: torch.Tensor) -> torch.Tensor:
        attn = blk.attn
        if getattr(attn, "head_scale", None) is not None:
            o = o * attn.head_scale
        B, H, N, d = o.shape
        o = o.transpose(1, 2).reshape(B, N, H * d)
        if hasattr(attn, "ln_inner"):  # custom block
            a = attn.out_drop(attn.out_proj(attn.ln_inner(o)))
            return blk.ls_1(blk.ln_attn(a))
        return blk.ls_1(attn.out_proj(o))

    def mlp_branch(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return blk.ls_2(blk.mlp(blk.ln_2(x)))

    # ------------------------------------------------------------------ heads
    def tokens_to_clip(self, t: torch.Tensor) -> torch.Tensor:
        """(B, M, C) -> (B, M, D): ``ln_post`` + ``proj`` (CoCa: the pooler's value path
        first)."""
        v = self.visual
        if v.attn_pool is not None:
            pool = v.attn_pool
            w_v, b_v = mha_value_weights(pool.attn)
            t = ops.attention_pool_value(
                pool.ln_k(t), w_v, b_v, pool.attn.out_proj.weight, pool.attn.out_proj.bias
            )  # (B, M, D_pool)
        t = v.ln_post(t)
        return t @ v.proj if v.proj is not None else t

    def pool(self, t: torch.Tensor) -> torch.Tensor:
        v = self.visual
        pooled, _ = v._pool(t)
        return pooled @ v.proj if v.proj is not None else pooled

    def stem_params(self) -> Tuple[List[nn.Parameter], List[nn.Parameter]]:
        v = self.visual
        stem = list(v.conv1.parameters()) + [v.class_embedding] + list(v.ln_pre.parameters())
        return stem, [v.positional_embedding]
