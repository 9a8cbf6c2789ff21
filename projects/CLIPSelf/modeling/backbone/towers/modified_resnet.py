"""open_clip's ``ModifiedResNet`` (OpenAI RN50 / RN101 / RN50x4 / x16 / x64;
docs/dense_features.md §9.4).

Layout: a 3-conv stem + avg-pool (stride 4), ``layer1..layer4`` (stages 0-3, strides 4, 8, 16,
32), then ``attnpool`` (``AttentionPool2d``): tokens ``z = [mean_t x_t, x_1 .. x_hw] + P``
(``P`` a learned positional embedding for the native ``(S/32)^2`` grid plus one slot for the mean
token), one multi-head attention with the mean token as the only query, output projection
``c_proj``.

Dense map per location ``t`` (MaskCLIP; ``last_block_mode="v"``): the attention pool's value and
output projections applied to every location,

    f_t = c_proj(v_proj(x_t + P_t))            (dense_ops.attention_pool_value)

which is what location ``t`` contributes to the pooled embedding
``c_proj(concat_h sum_t a^h_t v^h_t)`` (``= sum_t a_t f_t`` when the heads attend alike). The
other last-block modes run the attention pool with every location as a query (``"vanilla"``:
``o_t = softmax(q_t k^T / sqrt(d)) v``; ``"qq"``, ``"kk"``, ``"vv"``, ``"csa"``, ``"all"`` as in
docs/dense_features.md §3), then ``c_proj``. The pool has no residual and no MLP, so
``drop_residual`` / ``drop_ffn`` do not apply. ``P`` is resized bicubically to other grids (the
mean-token slot kept), as ViT positional embeddings are.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from torch import nn

from ... import dense_ops as ops
from .base import ConvTower, TowerUnsupported, run_stage

__all__ = ["ModifiedResNetTower"]


class ModifiedResNetTower(ConvTower):
    family = "modified_resnet"
    last_block_modes = ops.LAST_BLOCK_MODES

    @classmethod
    def matches(cls, visual: nn.Module) -> bool:
        return isinstance(visual, ModifiedResNet)

    def __init__(self, visual: nn.Module, embed_dim: int):
        super().__init__(visual, embed_dim)
        v = visual
        if v.attnpool is None:
            raise TowerUnsupported("ModifiedResNet without its attention pool has no CLIP head")
        width = v.layer1[0].conv1.in_channels
        self.stage_strides = [4, 8, 16, 32]
        self.stage_channels = [width * 4, width * 8, width * 16, width * 32]
        self.stride = 32
        n_pos = v.attnpool.positional_embedding.shape[0] - 1
        side = int(round(n_pos ** 0.5))
        if side * side != n_pos:
            raise TowerUnsupported(f"attention pool with {n_pos} positions is not a square grid")
        self.pretrain_grid = (side, side)
        self.num_heads = int(v.attnpool.num_heads)

    def forward_stages(
        self, x: torch.Tensor, taps: Sequence[int] = (), checkpoint: bool = False
    ) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
        v = self.visual
        x = v.stem(x)
        out = {}
        for i, layer in enumerate((v.layer1, v.layer2, v.layer3, v.layer4)):
            x = run_stage(layer, x, checkpoint)
            if i in taps:
                out[i] = x
        return x, out

    def pos_param(self) -> torch.Tensor:
        """(1 + S^2, C) positional embedding of the attention pool (slot 0 = mean token)."""
        return self.visual.attnpool.positional_embedding

    def _tokens(self, fmap: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 1 + h*w, C): [mean, locations] + positions."""
        x = fmap.flatten(2).transpose(1, 2)  # (B, h*w, C)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)
        return x + pos.to(x.dtype)

    def _heads(self, x: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
        B, N, _ = x.shape
        return lin(x).reshape(B, N, self.num_heads, -1).transpose(1, 2)  # (B, H, N, d)

    def dense(
        self,
        fmap: torch.Tensor,
        pos: torch.Tensor,
        mode: str = "v",
        bias: Optional[torch.Tensor] = None,
        impl: str = "sdpa",
    ) -> torch.Tensor:
        """(B, C, h, w) -> (B, D, h, w) per-location embeddings (module docstring), unnormalised.

        Args:
            fmap (Tensor): layer4 output. pos (Tensor): (1 + h*w, C) resized positions.
            mode (str): a ``dense_ops.LAST_BLOCK_MODES`` entry. bias (Tensor): optional (N, N)
                logit bias (e.g. ``gaussian_neighbour_bias`` with one prefix token).
            impl (str): "sdpa" or "math".
        """
        B, _, h, w = fmap.shape
        ap = self.visual.attnpool
        z = self._tokens(fmap, pos)  # (B, N, C)
        if mode == "v":
            f = ops.attention_pool_value(
                z[:, 1:], ap.v_proj.weight, ap.v_proj.bias, ap.c_proj.weight, ap.c_proj.bias
            )  # (B, h*w, D)
        else:
            q, k, v = (self._heads(z, lin) for lin in (ap.q_proj, ap.k_proj, ap.v_proj))
            o = ops.mode_attention(q, k, v, mode, bias=bias, impl=impl)  # (B, H, N, d)
            f = ap.c_proj(o.transpose(1, 2).flatten(2))[:, 1:]  # (B, h*w, D)
        return f.transpose(1, 2).reshape(B, -1, h, w)

    def pool(self, fmap: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, D): the attention pool with the mean token as query."""
        ap = self.visual.attnpool
        z = self._tokens(fmap, pos)
        q = self._heads(z[:, :1], ap.q_proj)  # (B, H, 1, d)
        k, v = self._heads(z, ap.k_proj), self._heads(z, ap.v_proj)
        o = F.scaled_dot_product_attention(q, k, v)  # (B, H, 1, d)
        return ap.c_proj(o.transpose(1, 2).flatten(2))[:, 0]

    def stem_params(self) -> List[nn.Parameter]:
        v = self.visual
        return [p for m in (v.conv1, v.bn1, v.conv2, v.bn2, v.conv3, v.bn3) for p in m.parameters()]

    def stage_module_names(self) -> List[List[str]]:
        return [["layer1"], ["layer2"], ["layer3"], ["layer4"]]
