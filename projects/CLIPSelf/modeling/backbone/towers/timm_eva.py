"""timm ``Eva`` trunks inside open_clip's ``TimmModel``: EVA01-g, EVA02-CLIP B/L (RoPE, SwiGLU,
class token), EVA02-E (post-norm blocks) and PE-Core (``AttentionRope``, RoPE with ``xy``
indexing and grid offset 1, class token + MAP head); docs/dense_features.md §4.2, §9.3.

Layout as :mod:`.timm_vit`, with ``EvaBlock`` (pre-norm, layer scales ``gamma_1/gamma_2``) or
``EvaBlockPostNorm`` (``x + norm1(attn(x))``, ``x + norm2(mlp(x))``), attention ``EvaAttention``
(fused ``qkv`` with ``q_bias``/``v_bias`` or separate ``q/k/v_proj``; inner LN ``attn.norm``) or
``AttentionRope`` (fused ``qkv`` with its own bias), and an optional ``rope``
(``RotaryEmbeddingCat``) rotating ``q``/``k`` of the patch tokens.

Dense map per patch token ``t``: as :mod:`.timm_vit` ("token": ``f_t = Head(norm(x_t))``; "map"
(PE-Core): ``f_t = Head(a_t + mlp(norm_p(a_t)))``, ``a_t = proj(W_v norm(x_t) + b_v)``; Eva's MAP
pools over all tokens, class token included, so ``pool`` matches ``visual(x)``).
RoPE tables are rebuilt per grid from the tower's own settings (``rope_spec``), per axis.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from timm.layers import AttentionRope, RotaryEmbeddingCat
from timm.models.eva import Eva, EvaAttention, EvaBlock, EvaBlockPostNorm
from torch import nn

from .base import RopeSpec, TowerUnsupported
from .timm_vit import TimmViTTower

__all__ = ["TimmEvaTower"]


class TimmEvaTower(TimmViTTower):
    family = "eva"
    _block_types = (EvaBlock, EvaBlockPostNorm)
    _post_norm_types = (EvaBlockPostNorm,)
    _attn_types = (EvaAttention, AttentionRope)
    _pools = ("token", "avg", "map")

    @classmethod
    def matches(cls, visual: nn.Module) -> bool:
        return isinstance(getattr(visual, "trunk", None), Eva)

    def __init__(self, visual: nn.Module, embed_dim: int):
        super().__init__(visual, embed_dim)
        t = visual.trunk
        if getattr(t, "rope_mixed", False):
            raise TowerUnsupported("mixed (learned, per-depth) RoPE is not supported")
        if t.rope is not None:
            r = t.rope
            if not isinstance(r, RotaryEmbeddingCat) or r.in_pixels or \
                    getattr(r, "grid_type", "index") != "index":
                raise TowerUnsupported(
                    f"RoPE {type(r).__name__} (in_pixels={r.in_pixels}) is not supported: only "
                    "the EVA02 / PE-Core 'cat' RoPE on an index grid is rebuilt per input grid"
                )
        for blk in t.blocks:
            if getattr(blk.attn, "num_kv_groups", 1) > 1:
                raise TowerUnsupported("grouped-query attention (num_kv_heads) is not supported")

    def rope_spec(self) -> Optional[RopeSpec]:
        r = self.visual.trunk.rope
        if r is None:
            return None
        ref = None if r.ref_feat_shape is None else tuple(int(s) for s in r.ref_feat_shape)
        return RopeSpec(
            head_dim=int(r.dim), ref_grid=ref, temperature=float(r.temperature),
            grid_offset=float(r.grid_offset), grid_indexing=str(r.grid_indexing),
            rotate_half=bool(r.rotate_half),
        )

    def rope_prefix(self, blk: nn.Module) -> int:
        return blk.attn.num_prefix_tokens

    # ------------------------------------------------------------------ blocks
    def _fused_bias(self, attn: nn.Module) -> Optional[torch.Tensor]:
        if getattr(attn, "q_bias", None) is not None:  # EvaAttention: q/v bias, zero k bias
            return torch.cat((attn.q_bias, attn.k_bias, attn.v_bias))
        return attn.qkv.bias  # AttentionRope (or no bias)

    def qkv(self, blk: nn.Module, y: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        B, N, _ = y.shape
        attn = blk.attn
        H = attn.num_heads
        if attn.qkv is not None:
            qkv = F.linear(y, attn.qkv.weight, self._fused_bias(attn))
            q, k, v = qkv.reshape(B, N, 3, H, -1).permute(2, 0, 3, 1, 4).unbind(0)
        else:
            q = attn.q_proj(y).reshape(B, N, H, -1).transpose(1, 2)
            k = attn.k_proj(y).reshape(B, N, H, -1).transpose(1, 2)
            v = attn.v_proj(y).reshape(B, N, H, -1).transpose(1, 2)
        return attn.q_norm(q), attn.k_norm(k), v

    def value(self, blk: nn.Module, y: torch.Tensor) -> torch.Tensor:
        B, N, _ = y.shape
        attn = blk.attn
        if attn.qkv is not None:
            n = attn.qkv.weight.shape[0] // 3
            if getattr(attn, "q_bias", None) is not None or isinstance(attn, EvaAttention):
                b = attn.v_bias
            else:
                b = None if attn.qkv.bias is None else attn.qkv.bias[2 * n:]
            v = F.linear(y, attn.qkv.weight[2 * n:], b)
        else:
            v = attn.v_proj(y)
        return v.reshape(B, N, attn.num_heads, -1).transpose(1, 2)

    def attn_output(self, blk: nn.Module, o: torch.Tensor) -> torch.Tensor:
        a = self._merge(blk.attn, o)
        if self._post_norm(blk):
            return blk.drop_path1(blk.norm1(a))
        if blk.gamma_1 is not None:
            a = blk.gamma_1 * a
        return blk.drop_path1(a)

    def mlp_branch(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self._post_norm(blk):
            return blk.drop_path2(blk.norm2(blk.mlp(x)))
        m = blk.mlp(blk.norm2(x))
        if blk.gamma_2 is not None:
            m = blk.gamma_2 * m
        return blk.drop_path2(m)
