"""CAT-Seg cost aggregation (docs/segmentation.md §8): cost embedding, spatial aggregation
(shifted-window attention per class, appearance-guided) and class aggregation (linear attention
across classes per location, text-guided).

Shape shorthand in this module: B images, C cost-embedding channels (128), T classes,
P prompt templates, D CLIP embedding dim, G guidance channels, h/w token grid, N = B*T class
slices, nH heads, d = C/nH head dim, L tokens per window, S pooled locations.
"""
import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import window_partition, window_reverse
from torch import nn

__all__ = [
    "CostEmbed",
    "SwinBlock",
    "SpatialAggregation",
    "ClassAggregation",
    "AggregatorLayer",
    "Aggregator",
    "window_attention",
    "shifted_window_mask",
    "linear_attention",
    "guided_linear",
]

IntPair = Union[int, Sequence[int]]


def _pair(x: IntPair) -> Tuple[int, int]:
    return (int(x), int(x)) if isinstance(x, int) else (int(x[0]), int(x[1]))


# ---------------------------------------------------------------------------- pure functions
def shifted_window_mask(
    size: IntPair, window: IntPair, shift: IntPair, device=None
) -> Optional[torch.Tensor]:
    """Which keys each query may attend to in (shifted) window attention on a padded grid.

    The grid of ``size`` is padded at the bottom/right to multiples of ``window`` and rolled by
    ``-shift``; a query attends to keys of its window that (1) are real (not padding) and
    (2) were not wrapped around by the roll on an axis where the query was not (Swin's regions).
    Every token may attend to itself, so no row is empty.

    Args:
        size (int or (H, W)): the unpadded grid.
        window (int or (wh, ww)): window size.
        shift (int or (sh, sw)): cyclic shift, 0 <= shift < window.
    Returns:
        Tensor or None: (nW, L, L) bool (True = attend), windows in row-major order; None when
        no masking is needed (no shift, no padding).
    """
    (H, W), (wh, ww), (sh, sw) = _pair(size), _pair(window), _pair(shift)
    Hp, Wp = math.ceil(H / wh) * wh, math.ceil(W / ww) * ww
    if sh == 0 and sw == 0 and Hp == H and Wp == W:
        return None
    rows = torch.arange(Hp, device=device)  # rolled-frame coordinates
    cols = torch.arange(Wp, device=device)
    orig_r, orig_c = (rows + sh) % Hp, (cols + sw) % Wp  # where each rolled token came from
    wrap_r = (rows >= Hp - sh) if sh > 0 else torch.zeros_like(rows, dtype=torch.bool)
    wrap_c = (cols >= Wp - sw) if sw > 0 else torch.zeros_like(cols, dtype=torch.bool)
    region = wrap_r.long()[:, None] * 2 + wrap_c.long()[None, :]  # (Hp, Wp)
    valid = (orig_r < H)[:, None] & (orig_c < W)[None, :]  # (Hp, Wp)

    def part(m):  # (Hp, Wp) -> (nW, L)
        return window_partition(m[None, :, :, None], (wh, ww)).reshape(-1, wh * ww)

    region, valid = part(region), part(valid)
    allowed = (region[:, :, None] == region[:, None, :]) & valid[:, None, :]  # (nW, L, L)
    eye = torch.eye(wh * ww, dtype=torch.bool, device=device)
    return allowed | eye


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: IntPair, shift: IntPair = 0
) -> torch.Tensor:
    """Multi-head (shifted) window attention on a 2-D grid of any size.

    Args:
        q, k, v (Tensor): (N, nH, H, W, d).
        window (int or (wh, ww)): window size; H and W are padded to multiples of it.
        shift (int or (sh, sw)): cyclic shift of the shifted windows (0: regular windows).
    Returns:
        Tensor: (N, nH, H, W, d), softmax(q k^T / sqrt(d)) v within each window.
    """
    N, nH, H, W, d = q.shape
    (wh, ww), (sh, sw) = _pair(window), _pair(shift)
    if not (0 <= sh < wh and 0 <= sw < ww):
        raise ValueError(f"shift {shift} must lie in [0, window {window})")
    Hp, Wp = math.ceil(H / wh) * wh, math.ceil(W / ww) * ww
    x = torch.stack([q, k, v])  # (3, N, nH, H, W, d)
    if Hp != H or Wp != W:
        x = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))
    if sh or sw:
        x = torch.roll(x, shifts=(-sh, -sw), dims=(3, 4))
    nW, L = (Hp // wh) * (Wp // ww), wh * ww
    # (3N, Hp, Wp, nH*d) -> windows (3N*nW, wh, ww, nH*d) -> (3, N, nW*nH, L, d)
    x = x.permute(0, 1, 3, 4, 2, 5).reshape(3 * N, Hp, Wp, nH * d)
    x = window_partition(x, (wh, ww)).reshape(3, N, nW, L, nH, d).transpose(3, 4)
    x = x.reshape(3, N, nW * nH, L, d)
    mask = shifted_window_mask((H, W), (wh, ww), (sh, sw), device=q.device)
    if mask is not None:  # (nW, L, L) -> (1, nW*nH, L, L), the same for every head
        mask = mask.repeat_interleave(nH, dim=0).unsqueeze(0)
    o = F.scaled_dot_product_attention(x[0], x[1], x[2], attn_mask=mask)  # (N, nW*nH, L, d)
    o = o.reshape(N * nW, nH, wh, ww, d).permute(0, 2, 3, 1, 4).reshape(N * nW, wh, ww, nH * d)
    o = window_reverse(o, (wh, ww), Hp, Wp).reshape(N, Hp, Wp, nH, d).permute(0, 3, 1, 2, 4)
    if sh or sw:
        o = torch.roll(o, shifts=(sh, sw), dims=(2, 3))
    return o[:, :, :H, :W]


def linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Linear attention with the ``elu + 1`` kernel (Katharopoulos et al., 2020) over axis -3.

    Args:
        q, k, v (Tensor): (..., T, nH, d) queries, keys, values of T tokens.
        eps (float): added to the normaliser.
    Returns:
        Tensor: (..., T, nH, d), ``phi(q_i) sum_j phi(k_j) v_j^T / (phi(q_i) . sum_j phi(k_j))``.
    """
    q, k = F.elu(q) + 1, F.elu(k) + 1
    T = v.shape[-3]
    v = v / T  # keeps the sums in fp16 range; undone below
    kv = torch.einsum("...tnd,...tne->...nde", k, v)  # (..., nH, d, d)
    z = 1.0 / (torch.einsum("...tnd,...nd->...tn", q, k.sum(dim=-3)) + eps)  # (..., T, nH)
    return torch.einsum("...tnd,...nde->...tne", q, kv) * z.unsqueeze(-1) * T


def guided_linear(
    linear: nn.Linear, x: torch.Tensor, guidance: Optional[torch.Tensor]
) -> torch.Tensor:
    """``linear(cat([x, guidance], -1))`` without materialising the concatenation: ``guidance``
    only needs to broadcast against ``x`` (e.g. one map per image for all its classes).

    Args:
        linear (nn.Linear): in_features = Cx + Cg.
        x (Tensor): (..., Cx).
        guidance (Tensor or None): (..., Cg) broadcastable to ``x``'s leading dims; None when
            ``linear`` has no guidance inputs.
    Returns:
        Tensor: (..., out_features).
    """
    cx = x.shape[-1]
    out = F.linear(x, linear.weight[:, :cx], linear.bias)
    if guidance is None:
        if linear.in_features != cx:
            raise ValueError("guided_linear: this layer expects guidance")
        return out
    return out + F.linear(guidance, linear.weight[:, cx:])


def _mlp(dim: int, ratio: float, act: type) -> nn.Sequential:
    hidden = int(dim * ratio)
    return nn.Sequential(nn.Linear(dim, hidden), act(), nn.Linear(hidden, dim))


# ---------------------------------------------------------------------------- modules
class CostEmbed(nn.Module):
    """Conv7x7 (P -> C) on the cost slice of each class: (B, P, T, h, w) -> (B, C, T, h, w)."""

    def __init__(self, prompt_channels: int = 80, hidden_dim: int = 128, kernel_size: int = 7):
        """
        Args:
            prompt_channels (int): P, the number of prompt templates.
            hidden_dim (int): C.
            kernel_size (int): 7 in CAT-Seg.
        """
        super().__init__()
        self.conv = nn.Conv2d(prompt_channels, hidden_dim, kernel_size, padding=kernel_size // 2)

    def forward(self, cost: torch.Tensor) -> torch.Tensor:
        B, P, T, h, w = cost.shape
        x = cost.transpose(1, 2).reshape(B * T, P, h, w)  # classes folded into the batch
        x = self.conv(x)  # (B*T, C, h, w)
        return x.reshape(B, T, -1, h, w).transpose(1, 2)


class SwinBlock(nn.Module):
    """Pre-LN (shifted) window attention block on each class slice, with guidance concatenated
    to the query and key inputs only (values come from the cost features)."""

    def __init__(
        self,
        dim: int,
        guidance_dim: int = 0,
        num_heads: int = 4,
        window_size: int = 12,
        shift: int = 0,
        mlp_ratio: float = 4.0,
    ):
        """
        Args:
            dim (int): C.
            guidance_dim (int): G of the appearance guidance (0: none).
            num_heads (int): attention heads (C must be divisible).
            window_size (int): square window; an axis shorter than it is one window, unshifted.
            shift (int): cyclic shift (0 or window_size // 2).
            mlp_ratio (float): MLP hidden width / C.
        """
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if not 0 <= shift < window_size:
            raise ValueError(f"shift {shift} must lie in [0, window_size {window_size})")
        self.num_heads, self.window_size, self.shift = num_heads, window_size, shift
        self.norm1 = nn.LayerNorm(dim)
        self.q = nn.Linear(dim + guidance_dim, dim)
        self.k = nn.Linear(dim + guidance_dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _mlp(dim, mlp_ratio, nn.GELU)

    def forward(self, x: torch.Tensor, guidance: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x (Tensor): (B, T, h, w, C).
            guidance (Tensor): (B, h, w, G) normalised appearance guidance, or None.
        Returns:
            Tensor: (B, T, h, w, C).
        """
        B, T, H, W, C = x.shape
        nH = self.num_heads
        g = None if guidance is None else guidance.unsqueeze(1)  # (B, 1, h, w, G)
        y = self.norm1(x)

        def heads(t):  # (B, T, h, w, C) -> (N, nH, h, w, d)
            return t.reshape(B * T, H, W, nH, C // nH).permute(0, 3, 1, 2, 4)

        q = heads(guided_linear(self.q, y, g))
        k = heads(guided_linear(self.k, y, g))
        v = heads(self.v(y))
        ws = self.window_size
        window = (min(ws, H), min(ws, W))
        shift = (self.shift if H > ws else 0, self.shift if W > ws else 0)
        o = window_attention(q, k, v, window, shift)  # (N, nH, h, w, d)
        o = o.permute(0, 2, 3, 1, 4).reshape(B, T, H, W, C)
        x = x + self.proj(o)
        return x + self.mlp(self.norm2(x))


class SpatialAggregation(nn.Module):
    """Two Swin blocks (shift 0, then window // 2) applied to each class slice independently."""

    def __init__(
        self,
        dim: int = 128,
        guidance_dim: int = 128,
        num_heads: int = 4,
        window_size: int = 12,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        self.guidance_norm = nn.LayerNorm(guidance_dim) if guidance_dim > 0 else None
        self.blocks = nn.ModuleList([
            SwinBlock(dim, guidance_dim, num_heads, window_size, shift, mlp_ratio)
            for shift in (0, window_size // 2)
        ])

    def forward(self, x: torch.Tensor, guidance: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x (Tensor): (B, C, T, h, w) cost embedding.
            guidance (Tensor): (B, G, h, w) appearance guidance, or None.
        Returns:
            Tensor: (B, C, T, h, w).
        """
        g = None
        if self.guidance_norm is not None:
            if guidance is None:
                raise ValueError("SpatialAggregation was built with guidance_dim > 0: pass it")
            g = self.guidance_norm(guidance.permute(0, 2, 3, 1))  # (B, h, w, G)
        y = x.permute(0, 2, 3, 4, 1)  # (B, T, h, w, C)
        for blk in self.blocks:
            y = blk(y, g)
        return y.permute(0, 4, 1, 2, 3)


class ClassAggregation(nn.Module):
    """Linear attention across classes at each (pooled) location, text-guided (q, k inputs).

    The cost is average-pooled by ``pooling_size`` (training) or ``test_pooling_size`` (eval),
    one pre-LN block (attention, MLP x4) runs on the pooled tokens, its output is bilinearly
    upsampled back and added to the input: ``x + up(block(pool(x)))`` as in CAT-Seg. With fewer
    classes than ``class_budget``, learnable padding tokens (and padding guidance) fill the
    sequence to that length. Both attributes can be changed at any time.
    """

    def __init__(
        self,
        dim: int = 128,
        guidance_dim: int = 128,
        num_heads: int = 4,
        pooling_size: int = 2,
        test_pooling_size: int = 1,
        class_budget: int = 256,
        mlp_ratio: float = 4.0,
    ):
        """
        Args:
            dim (int): C.
            guidance_dim (int): G of the text guidance (0: none).
            num_heads (int): heads of the linear attention.
            pooling_size (int): spatial average pooling in training (2 in CAT-Seg).
            test_pooling_size (int): pooling in eval mode (1, docs/segmentation.md §10).
            class_budget (int): pad shorter class sequences to this length (0: no padding).
            mlp_ratio (float): MLP hidden width / C.
        """
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.pooling_size = int(pooling_size)
        self.test_pooling_size = int(test_pooling_size)
        self.class_budget = int(class_budget)
        self.norm1 = nn.LayerNorm(dim)
        self.q = nn.Linear(dim + guidance_dim, dim)
        self.k = nn.Linear(dim + guidance_dim, dim)
        self.v = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _mlp(dim, mlp_ratio, nn.ReLU)
        pad = self.class_budget > 0
        self.pad_token = nn.Parameter(torch.zeros(dim)) if pad else None
        self.pad_guidance = (
            nn.Parameter(torch.zeros(guidance_dim)) if pad and guidance_dim else None
        )
        self.guidance_dim = guidance_dim

    def forward(self, x: torch.Tensor, guidance: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x (Tensor): (B, C, T, h, w).
            guidance (Tensor): (B, T, G) text guidance, or None.
        Returns:
            Tensor: (B, C, T, h, w).
        """
        B, C, T, H, W = x.shape
        k = self.pooling_size if self.training else self.test_pooling_size
        y = x.transpose(1, 2).reshape(B * T, C, H, W)
        if k > 1:
            y = F.avg_pool2d(y, k, stride=k, ceil_mode=True)
        h, w = y.shape[-2:]
        y = y.reshape(B, T, C, h * w).permute(0, 3, 1, 2)  # (B, S, T, C)
        g = guidance
        n_pad = self.class_budget - T if self.pad_token is not None else 0
        if n_pad > 0:
            y = torch.cat([y, self.pad_token.expand(B, h * w, n_pad, C)], dim=2)
            if g is not None and self.pad_guidance is not None:
                g = torch.cat([g, self.pad_guidance.expand(B, n_pad, -1)], dim=1)
        if g is not None:
            g = g.unsqueeze(1)  # (B, 1, T', G): the same for every location
        Tp, nH = y.shape[2], self.num_heads

        z = self.norm1(y)

        def heads(t):  # (B, S, T', C) -> (B, S, T', nH, d)
            return t.reshape(B, h * w, Tp, nH, C // nH)

        a = linear_attention(heads(guided_linear(self.q, z, g)),
                             heads(guided_linear(self.k, z, g)), heads(self.v(z)))
        y = y + a.reshape(B, h * w, Tp, C)
        y = y + self.mlp(self.norm2(y))
        y = y[:, :, :T].permute(0, 2, 3, 1).reshape(B * T, C, h, w)
        if (h, w) != (H, W):
            y = F.interpolate(y, size=(H, W), mode="bilinear", align_corners=True)
        return x + y.reshape(B, T, C, H, W).transpose(1, 2)


class AggregatorLayer(nn.Module):
    """Spatial aggregation (2 Swin blocks) followed by class aggregation."""

    def __init__(self, spatial: SpatialAggregation, classes: ClassAggregation):
        super().__init__()
        self.spatial = spatial
        self.classes = classes

    def forward(self, x, appearance_guidance=None, text_guidance=None):
        return self.classes(self.spatial(x, appearance_guidance), text_guidance)


class Aggregator(nn.Module):
    """Cost embedding + ``num_layers`` x [spatial, class] aggregation (docs/segmentation.md §8).

    Defaults are CAT-Seg's ViT-B configuration as used by CLIPSelf (old version,
    docs/segmentation.md §11): P = 80 ImageNet templates, D = 512, C = 128, 2 layers, 4 heads,
    window 12 on the 24x24 grid, guidance 128/128, pooling 2 in training and 1 at test, class budget
    256.
    """

    def __init__(
        self,
        *,
        text_dim: int = 512,
        appearance_dim: Optional[int] = None,
        prompt_channels: int = 80,
        hidden_dim: int = 128,
        appearance_guidance_dim: int = 128,
        text_guidance_dim: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        window_size: int = 12,
        mlp_ratio: float = 4.0,
        pooling_size: int = 2,
        test_pooling_size: int = 1,
        class_budget: int = 256,
    ):
        """
        Args:
            text_dim (int): D of the text embeddings (512 for B/16, 768 for L/14).
            appearance_dim (int): channels of the dense map given to ``forward`` (default D).
            prompt_channels (int): P, templates per class.
            hidden_dim (int): C of the cost embedding.
            appearance_guidance_dim (int): G of Conv3x3(D->G)+ReLU on the dense map (0: none).
            text_guidance_dim (int): G of Linear(D->G)+ReLU on the prompt-mean text (0: none).
            num_layers (int): aggregation layers.
            num_heads (int): heads of both attentions.
            window_size (int): Swin window (the shift is window_size // 2).
            mlp_ratio (float): MLP hidden width / C.
            pooling_size, test_pooling_size (int): spatial pooling of the class aggregation
                in training / eval (see :meth:`set_pooling_size`).
            class_budget (int): class aggregation pads shorter class lists to this length.
        """
        super().__init__()
        appearance_dim = text_dim if appearance_dim is None else appearance_dim
        self.cost_embed = CostEmbed(prompt_channels, hidden_dim)
        self.appearance_guidance = nn.Sequential(
            nn.Conv2d(appearance_dim, appearance_guidance_dim, 3, padding=1), nn.ReLU()
        ) if appearance_guidance_dim > 0 else None
        self.text_guidance = nn.Sequential(
            nn.Linear(text_dim, text_guidance_dim), nn.ReLU()
        ) if text_guidance_dim > 0 else None
        self.layers = nn.ModuleList([
            AggregatorLayer(
                SpatialAggregation(hidden_dim, appearance_guidance_dim, num_heads, window_size,
                                   mlp_ratio),
                ClassAggregation(hidden_dim, text_guidance_dim, num_heads, pooling_size,
                                 test_pooling_size, class_budget, mlp_ratio),
            )
            for _ in range(num_layers)
        ])
        self.hidden_dim = hidden_dim
        self.prompt_channels = prompt_channels

    def set_pooling_size(self, train: Optional[int] = None, test: Optional[int] = None) -> None:
        """Change the class-aggregation pooling of every layer (training and/or eval)."""
        for layer in self.layers:
            if train is not None:
                layer.classes.pooling_size = int(train)
            if test is not None:
                layer.classes.test_pooling_size = int(test)

    def forward(
        self, cost: torch.Tensor, dense: torch.Tensor, text: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            cost (Tensor): (B, P, T, h, w) from :func:`~clipself.modeling.catseg.cost_volume`.
            dense (Tensor): (B, D, h, w) dense CLIP map (appearance guidance).
            text (Tensor): (T, P, D) or (B, T, P, D) class embeddings (text guidance).
        Returns:
            Tensor: (B, C, T, h, w) aggregated cost embedding.
        """
        B, P, T = cost.shape[:3]
        if P != self.prompt_channels:
            raise ValueError(f"cost has {P} templates; the aggregator expects "
                             f"{self.prompt_channels} (prompt_channels)")
        x = self.cost_embed(cost)
        ag = self.appearance_guidance(dense) if self.appearance_guidance is not None else None
        tg = None
        if self.text_guidance is not None:
            t = F.normalize(F.normalize(text, dim=-1).mean(dim=-2), dim=-1)  # ([B,] T, D)
            tg = self.text_guidance(t.to(x.dtype))
            tg = tg.expand(B, T, -1) if tg.dim() == 2 else tg  # (B, T, G)
        for layer in self.layers:
            x = layer(x, ag, tg)
        return x
