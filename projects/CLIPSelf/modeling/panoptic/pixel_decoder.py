"""Mask2Former's multi-scale deformable-attention pixel decoder (docs/segmentation.md §3.1, §2).

Shape shorthand in this module:
    B: images, C: ``conv_dim``, L: transformer levels, S: flattened tokens over those levels,
    H_l/W_l: height/width of level l.

Levels are ordered by their reported stride only; every shape comes from the actual feature
maps, so non-integer strides (the patch-14 ViT pyramid: 3.5/7/14/28) work like 4/8/16/32.
"""

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import nn

from .ms_deform_attn import MSDeformAttn

__all__ = [
    "position_embedding_sine",
    "encoder_reference_points",
    "MSDeformAttnEncoderLayer",
    "MSDeformAttnEncoder",
    "MSDeformAttnPixelDecoder",
]


def position_embedding_sine(
    mask_or_shape: Union[torch.Tensor, Sequence[int]],
    num_pos_feats: int,
    temperature: float = 10000,
    normalize: bool = True,
    scale: float = 2 * math.pi,
    *,
    device: Optional[torch.device] = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """DETR/Mask2Former sine positional encoding of a 2-d map.

    With ``y``/``x`` the 1-based cumulative count of valid pixels along rows/columns (normalised
    to ``(0, scale]`` by the count at the last row/column when ``normalize``), and
    ``dim_t[k] = temperature ** (2 * (k // 2) / num_pos_feats)``:
    ``pos_y[2k] = sin(y / dim_t[2k])``, ``pos_y[2k+1] = cos(y / dim_t[2k+1])``, same for x;
    the output is ``cat(pos_y, pos_x)`` along channels.

    Args:
        mask_or_shape (Tensor or sequence): a bool padding mask (B, H, W), True where padded,
            or a shape (B, H, W) / (H, W) meaning "no padding".
        num_pos_feats (int): channels per axis (output has ``2 * num_pos_feats``); even.
        temperature (float): frequency base.
        normalize (bool): normalise the cumulative coordinates to ``(0, scale]``.
        scale (float): coordinate range after normalisation.
        device, dtype: used when a shape is given (a mask gives its own device).
    Returns:
        Tensor: (B, 2 * num_pos_feats, H, W); B = 1 when an (H, W) shape is given.
    """
    if isinstance(mask_or_shape, torch.Tensor):
        not_mask = ~mask_or_shape.bool()
        device = mask_or_shape.device
    else:
        shape = tuple(int(v) for v in mask_or_shape)
        if len(shape) == 2:
            shape = (1,) + shape
        not_mask = torch.ones(shape, dtype=torch.bool, device=device)
    y_embed = not_mask.cumsum(1, dtype=dtype)  # (B, H, W)
    x_embed = not_mask.cumsum(2, dtype=dtype)
    if normalize:
        eps = 1e-6
        y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
        x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=dtype, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos_x = x_embed[..., None] / dim_t  # (B, H, W, F)
    pos_y = y_embed[..., None] / dim_t
    pos_x = torch.stack([pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()], dim=4).flatten(3)
    pos_y = torch.stack([pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()], dim=4).flatten(3)
    return torch.cat([pos_y, pos_x], dim=3).permute(0, 3, 1, 2)  # (B, 2F, H, W)


def encoder_reference_points(
    spatial_shapes: Union[torch.Tensor, Sequence[Sequence[int]]],
    valid_ratios: Optional[torch.Tensor] = None,
    *,
    device: Optional[torch.device] = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Reference points of the deformable encoder: every token's pixel centre, on every level.

    Token (i, j) of level l (an H_l x W_l map) sits at ``((j + 0.5) / (r_x W_l),
    (i + 0.5) / (r_y H_l))`` in the valid area of its own level, and is then mapped to each
    level l' by multiplying with that level's valid ratios ``(r_x', r_y')``.

    Args:
        spatial_shapes (Tensor or list): (L, 2) integer (H_l, W_l).
        valid_ratios (Tensor or None): (B, L, 2) valid fraction (x, y) of each level;
            None means no padding (all ones).
    Returns:
        Tensor: (B, S, L, 2) normalised (x, y); B = 1 when ``valid_ratios`` is None.
    """
    if isinstance(spatial_shapes, torch.Tensor):
        device = spatial_shapes.device if device is None else device
        spatial_shapes = spatial_shapes.tolist()
    sizes = [(int(h), int(w)) for h, w in spatial_shapes]
    if valid_ratios is None:
        valid_ratios = torch.ones(1, len(sizes), 2, dtype=dtype, device=device)
    ref_list = []
    for lvl, (h, w) in enumerate(sizes):
        ys = (torch.arange(h, dtype=dtype, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=dtype, device=device) + 0.5) / w
        ref_y, ref_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W)
        ref_x = ref_x.reshape(1, -1) / valid_ratios[:, None, lvl, 0]  # (B, H*W)
        ref_y = ref_y.reshape(1, -1) / valid_ratios[:, None, lvl, 1]
        ref_list.append(torch.stack([ref_x, ref_y], dim=-1))  # (B, H*W, 2)
    reference_points = torch.cat(ref_list, dim=1)  # (B, S, 2)
    return reference_points[:, :, None] * valid_ratios[:, None]  # (B, S, L, 2)


class MSDeformAttnEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention over all levels, then a ReLU FFN."""

    def __init__(
        self,
        *,
        d_model: int = 256,
        d_ffn: int = 1024,
        dropout: float = 0.0,
        n_levels: int = 3,
        n_heads: int = 8,
        n_points: int = 4,
    ):
        """
        Args:
            d_model (int): width C.
            d_ffn (int): FFN hidden width.
            dropout (float): dropout after attention and inside/after the FFN.
            n_levels (int), n_heads (int), n_points (int): see :class:`MSDeformAttn`.
        """
        super().__init__()
        self.self_attn = MSDeformAttn(
            d_model=d_model, n_levels=n_levels, n_heads=n_heads, n_points=n_points
        )
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        padding_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """
        Args:
            src (Tensor): (B, S, C) tokens; pos (Tensor): (B, S, C) position + level embedding.
            reference_points (Tensor): (B, S, L, 2); spatial_shapes (Tensor): (L, 2);
            level_start_index (Tensor): (L,); padding_mask (Tensor or None): (B, S).
        Returns:
            Tensor: (B, S, C).
        """
        attn = self.self_attn(
            src + pos, reference_points, src, spatial_shapes, level_start_index, padding_mask
        )
        src = self.norm1(src + self.dropout1(attn))
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class MSDeformAttnEncoder(nn.Module):
    """Stack of :class:`MSDeformAttnEncoderLayer` over flattened multi-level maps."""

    def __init__(
        self,
        *,
        d_model: int = 256,
        n_heads: int = 8,
        num_layers: int = 6,
        d_ffn: int = 1024,
        dropout: float = 0.0,
        n_levels: int = 3,
        n_points: int = 4,
    ):
        """
        Args:
            d_model (int): width C. n_heads (int): heads. num_layers (int): layers.
            d_ffn (int): FFN width. dropout (float): dropout. n_levels (int): levels L.
            n_points (int): sampling points per head and level.
        """
        super().__init__()
        self.layers = nn.ModuleList(
            [
                MSDeformAttnEncoderLayer(
                    d_model=d_model,
                    d_ffn=d_ffn,
                    dropout=dropout,
                    n_levels=n_levels,
                    n_heads=n_heads,
                    n_points=n_points,
                )
                for _ in range(num_layers)
            ]
        )
        self.reset_parameters()

    def reset_parameters(self):
        """Xavier for every matrix, then the deformable attention's own initialisation."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        padding_mask: Optional[torch.Tensor] = None,
        valid_ratios: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """
        Args:
            src (Tensor): (B, S, C); pos (Tensor): (B, S, C); spatial_shapes (Tensor): (L, 2);
            level_start_index (Tensor): (L,); padding_mask (Tensor or None): (B, S);
            valid_ratios (Tensor or None): (B, L, 2), None = all ones.
        Returns:
            Tensor: (B, S, C).
        """
        reference_points = encoder_reference_points(
            spatial_shapes, valid_ratios, device=src.device, dtype=src.dtype
        ).expand(
            src.shape[0], -1, -1, -1
        )  # (B, S, L, 2)
        out = src
        for layer in self.layers:
            out = layer(out, pos, reference_points, spatial_shapes, level_start_index, padding_mask)
        return out


class MSDeformAttnPixelDecoder(nn.Module):
    """Mask2Former pixel decoder: deformable encoder on the coarse levels + FPN to fine ones.

    The ``transformer_in_features`` (strides 8/16/32, or 7/14/28 for a patch-14 ViT) are
    projected (1x1 conv + GN) to ``conv_dim``, given sine + level embeddings and refined by a
    deformable encoder over all of them. The remaining finer features are merged FPN-style
    (lateral 1x1 conv + GN, plus the upsampled coarser output, then 3x3 conv + GN + ReLU).
    The number of FPN steps is ``round(log2(min transformer stride / common_stride))`` (so
    7 -> 3.5 with ``common_stride=4`` is one step), taken from the finer features nearest
    to the transformer levels. Runs in fp32 with autocast disabled.
    """

    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        transformer_in_features: Sequence[str] = ("res3", "res4", "res5"),
        conv_dim: int = 256,
        mask_dim: int = 256,
        norm: str = "GN",
        transformer_dropout: float = 0.0,
        transformer_nheads: int = 8,
        transformer_dim_feedforward: int = 1024,
        transformer_enc_layers: int = 6,
        transformer_n_points: int = 4,
        common_stride: float = 4,
        fpn_interpolation: str = "bilinear",
    ):
        """
        Args:
            input_shape (dict[str, ShapeSpec]): backbone features (channels, stride) to use,
                e.g. res2..res5; ordered by stride (strides need not be integers).
            transformer_in_features (list[str]): features refined by the deformable encoder.
            conv_dim (int): width of the decoder (and of the multi-scale outputs).
            mask_dim (int): channels of ``mask_features``.
            norm (str): Detectron2 norm name for the convolutions ("GN" = GroupNorm(32)).
            transformer_dropout (float): encoder dropout.
            transformer_nheads (int): encoder attention heads.
            transformer_dim_feedforward (int): encoder FFN width.
            transformer_enc_layers (int): number of encoder layers.
            transformer_n_points (int): sampling points per head and level.
            common_stride (float): stride of ``mask_features``; sets the number of FPN steps.
            fpn_interpolation (str): ``F.interpolate`` mode for the FPN top-down path
                ("bilinear" as Mask2Former's deformable pixel decoder, or "nearest").
        """
        super().__init__()
        if fpn_interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"fpn_interpolation must be bilinear/nearest, not {fpn_interpolation}")
        for name in transformer_in_features:
            if name not in input_shape:
                raise KeyError(f"transformer feature {name!r} not in input_shape")
        # fine -> coarse by stride
        ordered = sorted(input_shape.items(), key=lambda kv: kv[1].stride)
        self.in_features = [k for k, _ in ordered]
        self.feature_strides = [v.stride for _, v in ordered]
        self.feature_channels = [v.channels for _, v in ordered]

        # transformer levels, coarse -> fine (level embedding index 0 = coarsest)
        tr = [(k, v) for k, v in ordered if k in transformer_in_features][::-1]
        self.transformer_in_features = [k for k, _ in tr]
        self.transformer_feature_strides = [v.stride for _, v in tr]
        self.transformer_num_feature_levels = len(tr)
        self.input_proj = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(v.channels, conv_dim, kernel_size=1), self._norm(norm, conv_dim)
                )
                for _, v in tr
            ]
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)

        self.transformer = MSDeformAttnEncoder(
            d_model=conv_dim,
            n_heads=transformer_nheads,
            num_layers=transformer_enc_layers,
            d_ffn=transformer_dim_feedforward,
            dropout=transformer_dropout,
            n_levels=self.transformer_num_feature_levels,
            n_points=transformer_n_points,
        )
        self.pe_num_feats = conv_dim // 2
        self.level_embed = nn.Parameter(torch.empty(self.transformer_num_feature_levels, conv_dim))
        nn.init.normal_(self.level_embed)

        # FPN levels: the finer features just below the transformer levels, coarse -> fine
        min_tr_stride = min(self.transformer_feature_strides)
        finer = [(k, v) for k, v in ordered if v.stride < min_tr_stride][::-1]
        num_fpn_levels = max(0, int(round(math.log2(min_tr_stride / common_stride))))
        if num_fpn_levels > len(finer):
            raise ValueError(
                f"common_stride={common_stride} needs {num_fpn_levels} finer features below "
                f"stride {min_tr_stride}, got {[k for k, _ in finer]}"
            )
        fpn = finer[:num_fpn_levels]
        self.fpn_in_features = [k for k, _ in fpn]
        self.common_stride = common_stride
        self.fpn_interpolation = fpn_interpolation
        use_bias = norm == ""
        self.lateral_convs = nn.ModuleList()
        self.output_convs = nn.ModuleList()
        for _, v in fpn:
            lateral = Conv2d(
                v.channels, conv_dim, kernel_size=1, bias=use_bias, norm=get_norm(norm, conv_dim)
            )
            output = Conv2d(
                conv_dim,
                conv_dim,
                kernel_size=3,
                padding=1,
                bias=use_bias,
                norm=get_norm(norm, conv_dim),
                activation=F.relu,
            )
            weight_init.c2_xavier_fill(lateral)
            weight_init.c2_xavier_fill(output)
            self.lateral_convs.append(lateral)
            self.output_convs.append(output)

        self.mask_dim = mask_dim
        self.conv_dim = conv_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=1)
        weight_init.c2_xavier_fill(self.mask_features)
        # the transformer decoder reads the 3 coarsest outputs
        self.maskformer_num_feature_levels = min(3, self.transformer_num_feature_levels)

    @staticmethod
    def _norm(norm: str, channels: int) -> nn.Module:
        layer = get_norm(norm, channels)
        return nn.Identity() if layer is None else layer

    def forward_features(
        self, features: Dict[str, torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        """
        Args:
            features (dict[str, Tensor]): backbone maps (B, C_k, H_k, W_k) by name.
        Returns:
            tuple:
                mask_features (Tensor): (B, mask_dim, H_f, W_f) at the finest FPN level
                    (stride ``common_stride``; res2's size).
                transformer_encoder_features (Tensor): (B, conv_dim, H, W) encoder output
                    of the coarsest level.
                multi_scale_features (list[Tensor]): 3 maps (B, conv_dim, H_l, W_l), coarse
                    to fine (strides 32/16/8 or 28/14/7), for the transformer decoder.
        """
        device_type = next(iter(features.values())).device.type
        with torch.autocast(device_type=device_type, enabled=False):
            return self._forward_fp32({k: v.float() for k, v in features.items()})

    def forward(self, features: Dict[str, torch.Tensor]):
        """Same as :meth:`forward_features`."""
        return self.forward_features(features)

    def _forward_fp32(self, features: Dict[str, torch.Tensor]):
        srcs, pos = [], []
        for lvl, name in enumerate(self.transformer_in_features):  # coarse -> fine
            x = features[name]
            srcs.append(self.input_proj[lvl](x))
            pos.append(
                position_embedding_sine(
                    (x.shape[0], x.shape[-2], x.shape[-1]),
                    self.pe_num_feats,
                    device=x.device,
                    dtype=x.dtype,
                )
            )
        sizes = [(int(s.shape[-2]), int(s.shape[-1])) for s in srcs]
        spatial_shapes = torch.as_tensor(sizes, dtype=torch.long, device=srcs[0].device)  # (L, 2)
        level_start_index = torch.cat(
            [spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]]
        )  # (L,)
        src_flatten = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], dim=1)  # (B, S, C)
        pos_flatten = torch.cat(
            [
                p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
                for lvl, p in enumerate(pos)
            ],
            dim=1,
        )  # (B, S, C)
        # no padding masks: maps are padded to size_divisibility, valid ratios are all 1
        memory = self.transformer(src_flatten, pos_flatten, spatial_shapes, level_start_index)

        batch = memory.shape[0]
        out = [
            y.transpose(1, 2).reshape(batch, -1, h, w)
            for y, (h, w) in zip(memory.split([h * w for h, w in sizes], dim=1), sizes)
        ]  # coarse -> fine, (B, C, H_l, W_l)

        for lvl, name in enumerate(self.fpn_in_features):  # coarse -> fine
            lateral = self.lateral_convs[lvl](features[name])
            top_down = F.interpolate(
                out[-1],
                size=lateral.shape[-2:],
                mode=self.fpn_interpolation,
                align_corners=None if self.fpn_interpolation == "nearest" else False,
            )
            out.append(self.output_convs[lvl](lateral + top_down))

        multi_scale_features = out[: self.maskformer_num_feature_levels]
        return self.mask_features(out[-1]), out[0], multi_scale_features
