"""Multi-scale deformable attention in pure PyTorch (Deformable DETR; docs/segmentation.md §3.2).

Shape shorthand in this module:
    N: batch, Lq: queries, S: flattened keys over all levels (sum of H_l * W_l),
    L: feature levels, M: attention heads, P: sampling points per head and level,
    D: head dim, C = M * D: model width.

Sampling locations are normalised (x, y) in [0, 1] over each level's map, with the pixel-centre
convention of ``F.grid_sample(align_corners=False)``: pixel (i, j) of an H x W map sits at
((j + 0.5) / W, (i + 0.5) / H). Samples outside the map read zeros (bilinear, zero padding).

Only the pure-PyTorch core is provided (no compiled op); it is differentiable with respect to
the values, the sampling locations and the attention weights.
"""

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ms_deform_attn_core",
    "deform_sampling_locations",
    "sampling_offset_bias",
    "MSDeformAttn",
]


def _level_sizes(spatial_shapes: Union[torch.Tensor, Sequence[Sequence[int]]]):
    """List of (H_l, W_l) python ints from a (L, 2) tensor or a sequence of pairs."""
    if isinstance(spatial_shapes, torch.Tensor):
        spatial_shapes = spatial_shapes.tolist()
    return [(int(h), int(w)) for h, w in spatial_shapes]


def ms_deform_attn_core(
    value: torch.Tensor,
    spatial_shapes: Union[torch.Tensor, Sequence[Sequence[int]]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Attention-weighted sum of bilinear samples from a multi-level value pyramid.

    ``out[n, q, m*D:(m+1)*D] = sum_{l,p} A[n,q,m,l,p] * bilinear(V_l[n, :, m], loc[n,q,m,l,p])``
    where ``V_l`` is level ``l`` of ``value`` reshaped to (H_l, W_l) and ``bilinear`` is
    ``F.grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)`` at
    ``2 * loc - 1``.

    Args:
        value (Tensor): (N, S, M, D) per-head values, levels flattened row-major and
            concatenated in the order of ``spatial_shapes``.
        spatial_shapes (Tensor or list): (L, 2) integer (H_l, W_l) per level.
        sampling_locations (Tensor): (N, Lq, M, L, P, 2) normalised (x, y) in [0, 1].
        attention_weights (Tensor): (N, Lq, M, L, P), already normalised over L * P.
    Returns:
        Tensor: (N, Lq, M * D).
    """
    n, s, m, d = value.shape
    _, lq, _, num_levels, num_points, _ = sampling_locations.shape
    sizes = _level_sizes(spatial_shapes)
    if len(sizes) != num_levels or sum(h * w for h, w in sizes) != s:
        raise ValueError(
            f"spatial_shapes {sizes} do not match value with S={s} and {num_levels} levels"
        )
    value_levels = value.split([h * w for h, w in sizes], dim=1)
    grids = 2 * sampling_locations - 1  # (N, Lq, M, L, P, 2) in grid_sample's [-1, 1]
    # attention weights as (N*M, 1, Lq, L, P) to broadcast over the head dim
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, num_levels, num_points)
    out = value.new_zeros(n * m, d, lq)
    for lvl, (h, w) in enumerate(sizes):
        # (N, H*W, M, D) -> (N*M, D, H, W)
        v = value_levels[lvl].permute(0, 2, 3, 1).reshape(n * m, d, h, w)
        # (N, Lq, M, P, 2) -> (N*M, Lq, P, 2)
        g = grids[:, :, :, lvl].transpose(1, 2).reshape(n * m, lq, num_points, 2)
        sampled = F.grid_sample(
            v, g, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (N*M, D, Lq, P)
        out = out + (sampled * weights[..., lvl, :]).sum(-1)  # (N*M, D, Lq)
    # (N*M, D, Lq) -> (N, M*D, Lq) -> (N, Lq, M*D)
    return out.view(n, m * d, lq).transpose(1, 2).contiguous()


def deform_sampling_locations(
    reference_points: torch.Tensor,
    sampling_offsets: torch.Tensor,
    spatial_shapes: torch.Tensor,
) -> torch.Tensor:
    """Sampling locations = reference point + offset measured in pixels of each level.

    Args:
        reference_points (Tensor): (N, Lq, L, 2) normalised (x, y) in [0, 1].
        sampling_offsets (Tensor): (N, Lq, M, L, P, 2) offsets (x, y) in pixels of level l.
        spatial_shapes (Tensor): (L, 2) integer (H_l, W_l).
    Returns:
        Tensor: (N, Lq, M, L, P, 2) normalised (x, y).
    """
    # offsets are normalised by each level's (W, H)
    normalizer = spatial_shapes.flip(-1).to(sampling_offsets)  # (L, 2) = (W_l, H_l)
    return (
        reference_points[:, :, None, :, None, :]
        + sampling_offsets / normalizer[None, None, None, :, None, :]
    )


def sampling_offset_bias(n_heads: int, n_levels: int, n_points: int) -> torch.Tensor:
    """Initial sampling-offset bias: heads point in evenly spaced directions.

    Head ``m`` gets the direction at angle ``2*pi*m / n_heads``, scaled so that its larger
    component is 1, and point ``p`` of every level sits ``p + 1`` times further along it.

    Returns:
        Tensor: (n_heads, n_levels, n_points, 2) offsets (x, y) in pixels.
    """
    thetas = torch.arange(n_heads, dtype=torch.float64) * (2.0 * math.pi / n_heads)
    directions = torch.stack([thetas.cos(), thetas.sin()], dim=-1)  # (M, 2)
    directions = directions / directions.abs().max(dim=-1, keepdim=True).values
    scale = torch.arange(1, n_points + 1, dtype=torch.float64)  # (P,)
    bias = directions[:, None, None, :] * scale[None, None, :, None]  # (M, 1, P, 2)
    return bias.expand(n_heads, n_levels, n_points, 2).float().contiguous()


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention (Deformable DETR), pure-PyTorch core.

    Each query predicts, per head, ``n_points`` sampling offsets on every level around its
    reference point and their attention weights (softmax over levels x points).
    """

    def __init__(
        self, *, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4
    ):
        """
        Args:
            d_model (int): model width C; must be divisible by ``n_heads``.
            n_levels (int): number of feature levels L.
            n_heads (int): number of attention heads M.
            n_points (int): sampling points P per head and level.
        """
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points

        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self):
        """Offsets: zero weights and directional bias; attention: zeros; projections: xavier."""
        nn.init.zeros_(self.sampling_offsets.weight)
        with torch.no_grad():
            bias = sampling_offset_bias(self.n_heads, self.n_levels, self.n_points)
            self.sampling_offsets.bias.copy_(bias.view(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        input_spatial_shapes: torch.Tensor,
        input_level_start_index: torch.Tensor,
        input_padding_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """
        Args:
            query (Tensor): (N, Lq, C) queries (usually with positional embedding added).
            reference_points (Tensor): (N, Lq, L, 2) normalised (x, y) in [0, 1] per level.
            input_flatten (Tensor): (N, S, C) flattened multi-level keys/values.
            input_spatial_shapes (Tensor): (L, 2) long (H_l, W_l).
            input_level_start_index (Tensor): (L,) start of each level in S (kept for API
                compatibility; the levels are split by ``input_spatial_shapes``).
            input_padding_mask (Tensor or None): (N, S) bool, True where padded; padded
                values are zeroed before sampling.
        Returns:
            Tensor: (N, Lq, C).
        """
        n, lq, _ = query.shape
        _, s, _ = input_flatten.shape
        if reference_points.shape[-1] != 2:
            raise ValueError("Only 2-d reference points (x, y) are supported")
        m, num_levels, num_points = self.n_heads, self.n_levels, self.n_points
        if input_spatial_shapes.shape[0] != num_levels:
            raise ValueError(
                f"Got {input_spatial_shapes.shape[0]} levels, module built for {num_levels}"
            )

        value = self.value_proj(input_flatten)  # (N, S, C)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(n, s, m, self.d_model // m)  # (N, S, M, D)

        offsets = self.sampling_offsets(query).view(n, lq, m, num_levels, num_points, 2)
        weights = self.attention_weights(query).view(n, lq, m, num_levels * num_points)
        weights = weights.softmax(-1).view(n, lq, m, num_levels, num_points)
        locations = deform_sampling_locations(reference_points, offsets, input_spatial_shapes)

        out = ms_deform_attn_core(value, input_spatial_shapes, locations, weights)  # (N, Lq, C)
        return self.output_proj(out)
