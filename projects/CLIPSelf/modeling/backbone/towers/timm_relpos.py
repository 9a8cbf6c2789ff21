"""timm ``VisionTransformerRelPos`` trunks (``vit_relpos_medium_patch16_cls_224``;
docs/dense_features.md §9.2): a timm ViT without absolute positions whose attention logits get a
relative-position bias from a small MLP over log-spaced relative coordinates (Swin-V2 style
``RelPosMlp``, per block or shared).

The MLP takes any relative offset, so the bias is rebuilt for every grid
(:func:`relpos_mlp_bias`, with timm's own coordinate and index helpers): at the native grid it is
the module's own ``get_bias()``. Blocks, heads and the dense map are those of :mod:`.timm_vit`
("token" pooling: ``f_t = Head(norm(x_t))``). A learned bias table (``RelPosBias``) has a fixed
window and is rejected.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from timm.layers.pos_embed_rel import (
    RelPosMlp,
    gen_relative_log_coords,
    gen_relative_position_index,
)
from timm.models.vision_transformer_relpos import (
    RelPosAttention,
    RelPosBlock,
    ResPostRelPosBlock,
    VisionTransformerRelPos,
)
from torch import nn

from .base import TowerUnsupported
from .timm_vit import TimmViTTower

__all__ = ["TimmRelPosViTTower", "relpos_mlp_bias"]


def relpos_mlp_bias(rel_pos: RelPosMlp, grid: Sequence[int]) -> torch.Tensor:
    """A ``RelPosMlp``'s attention bias for an (h, w) token grid.

    ``b[i, j] = act(mlp(log_coords(p_i - p_j)))`` per head (times the gain in "swin" mode),
    zero-padded for the prefix tokens (timm ``RelPosMlp.get_bias`` at another window size).

    Args:
        rel_pos (RelPosMlp): the module (MLP weights, mode, prefix tokens, pretrained window).
        grid (tuple[int, int]): (h, w).
    Returns:
        Tensor: (1, H, P + h*w, P + h*w).
    """
    grid = (int(grid[0]), int(grid[1]))
    if grid == tuple(rel_pos.window_size):
        return rel_pos.get_bias()
    w = next(rel_pos.mlp.parameters())
    coords = gen_relative_log_coords(
        grid, rel_pos.pretrained_window_size, mode=rel_pos.mode, device=w.device, dtype=w.dtype
    )  # (2h-1, 2w-1, 2)
    index = gen_relative_position_index(grid, device=w.device).view(-1)  # (N^2,)
    n = grid[0] * grid[1]
    bias = rel_pos.mlp(coords).view(-1, rel_pos.num_heads)[index].view(n, n, -1)
    bias = rel_pos.bias_act(bias.permute(2, 0, 1))  # (H, N, N)
    if rel_pos.bias_gain is not None:
        bias = rel_pos.bias_gain * bias
    if rel_pos.prefix_tokens:
        p = rel_pos.prefix_tokens
        bias = F.pad(bias, [p, 0, p, 0])
    return bias.unsqueeze(0).contiguous()


class TimmRelPosViTTower(TimmViTTower):
    family = "timm_vit"
    _block_types = (RelPosBlock, ResPostRelPosBlock)
    _post_norm_types = (ResPostRelPosBlock,)
    _attn_types = (RelPosAttention,)
    _pools = ("token", "avg")

    @classmethod
    def matches(cls, visual: nn.Module) -> bool:
        return isinstance(getattr(visual, "trunk", None), VisionTransformerRelPos)

    def __init__(self, visual: nn.Module, embed_dim: int):
        super().__init__(visual, embed_dim)
        t = visual.trunk
        mods = [t.shared_rel_pos] if t.shared_rel_pos is not None else \
            [b.attn.rel_pos for b in t.blocks]
        for m in mods:
            if m is not None and not isinstance(m, RelPosMlp):
                raise TowerUnsupported(
                    f"relative position {type(m).__name__}: a learned bias table has a fixed "
                    "window; only the coordinate MLP (RelPosMlp) is rebuilt for other grids"
                )

    # ------------------------------------------------------------------ tokens in
    def pos_param(self) -> Tuple[Optional[torch.Tensor], int]:
        return None, 0

    def embed(self, x: torch.Tensor, pos: Optional[torch.Tensor]) -> torch.Tensor:
        tr = self.visual.trunk
        t = self._patches(x)
        if tr.cls_token is not None:
            t = torch.cat([tr.cls_token.expand(t.shape[0], -1, -1).to(t.dtype), t], dim=1)
        return t

    def attn_bias(
        self, blk: nn.Module, grid: Sequence[int], device: torch.device
    ) -> Optional[torch.Tensor]:
        rel_pos = self.visual.trunk.shared_rel_pos
        rel_pos = blk.attn.rel_pos if rel_pos is None else rel_pos
        return None if rel_pos is None else relpos_mlp_bias(rel_pos, grid)

    def _merge(self, attn: nn.Module, o: torch.Tensor) -> torch.Tensor:
        B, H, N, d = o.shape
        o = o.transpose(1, 2).reshape(B, N, H * d)
        return attn.proj_drop(attn.proj(o))

    def stem_params(self) -> Tuple[List[nn.Parameter], List[nn.Parameter]]:
        t = self.visual.trunk
        stem = list(t.patch_embed.parameters())
        stem += [t.cls_token] if t.cls_token is not None else []
        return stem, []
