"""CAT-Seg upsampling decoder (docs/segmentation.md §8).

The aggregated cost of each class is upsampled twice by 2 (ConvT 2x2), each time concatenated
with guidance from an intermediate CLIP block (upsampled to the same resolution), refined by
(Conv3x3-GN-ReLU) x 2, and a Conv3x3 head gives one logit map per class.

Shape shorthand in this module: B images, C channels, T classes, N = B*T class slices, h/w token
grid, W CLIP width, g_i guidance channels of stage i.
"""
import math
from typing import List, Optional, Sequence, Union

import torch
from torch import nn

__all__ = ["GuidanceProjection", "UpBlock", "UpsamplingDecoder"]


def _group_norm(channels: int, group_channels: int) -> nn.GroupNorm:
    """GroupNorm with about ``group_channels`` channels per group (16 in CAT-Seg)."""
    groups = math.gcd(channels, max(1, channels // group_channels))
    return nn.GroupNorm(groups, channels)


class GuidanceProjection(nn.Module):
    """ConvT (scale x scale, stride scale) W -> up_channels, then Conv3x3 + ReLU -> out_channels:
    (B, W, h, w) -> (B, out_channels, scale*h, scale*w)."""

    def __init__(self, in_channels: int, up_channels: int, out_channels: int, scale: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, up_channels, scale, stride=scale)
        self.proj = nn.Sequential(nn.Conv2d(up_channels, out_channels, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.up(x))


class UpBlock(nn.Module):
    """ConvT 2x2 (C_in -> C_in - g), concat guidance (g), (Conv3x3-GN-ReLU) x 2 -> C_out."""

    def __init__(
        self, in_channels: int, out_channels: int, guidance_channels: int = 0,
        group_channels: int = 16,
    ):
        super().__init__()
        if not 0 <= guidance_channels < in_channels:
            raise ValueError(f"guidance channels {guidance_channels} must be < {in_channels}")
        self.guidance_channels = guidance_channels
        self.up = nn.ConvTranspose2d(in_channels, in_channels - guidance_channels, 2, stride=2)
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            _group_norm(out_channels, group_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            _group_norm(out_channels, group_channels),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor, guidance: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x (Tensor): (N, C_in, h, w), N = B*T class slices (image-major).
            guidance (Tensor): (B, g, 2h, 2w), shared by the T classes of each image.
        Returns:
            Tensor: (N, C_out, 2h, 2w).
        """
        x = self.up(x)
        if self.guidance_channels:
            if guidance is None:
                raise ValueError("UpBlock was built with guidance channels: pass the guidance")
            B = guidance.shape[0]
            g = guidance.unsqueeze(1).expand(B, x.shape[0] // B, *guidance.shape[1:])
            x = torch.cat([x, g.flatten(0, 1).to(x.dtype)], dim=1)
        return self.conv(x)


class UpsamplingDecoder(nn.Module):
    """Two upsampling stages and a per-class logit head: (B, C, T, h, w) -> (B, T, 4h, 4w).

    Defaults follow CAT-Seg's ViT-B head: 128 -> 64 -> 32 channels, guidance from two CLIP
    blocks of width 768 (blocks 3 and 7; the first given feeds the first stage), upsampled
    by ConvT to 256 (x2) and 128 (x4) channels and projected to 32 and 16.
    """

    def __init__(
        self,
        *,
        hidden_dim: int = 128,
        decoder_dims: Sequence[int] = (64, 32),
        guidance_in_channels: Union[int, Sequence[int]] = 768,
        guidance_up_channels: Sequence[int] = (256, 128),
        guidance_dims: Sequence[int] = (32, 16),
        group_channels: int = 16,
    ):
        """
        Args:
            hidden_dim (int): C of the aggregated cost.
            decoder_dims (list[int]): output channels of the upsampling stages.
            guidance_in_channels (int or list[int]): width W of the tapped CLIP blocks.
            guidance_up_channels (list[int]): ConvT output channels per stage (its scale is
                2**(i+1) so that the guidance meets stage i at its resolution).
            guidance_dims (list[int]): g_i after Conv3x3 + ReLU; 0 disables a stage's guidance.
            group_channels (int): channels per GroupNorm group.
        """
        super().__init__()
        n = len(decoder_dims)
        if not len(guidance_up_channels) == len(guidance_dims) == n:
            raise ValueError(
                "decoder_dims, guidance_up_channels and guidance_dims differ in length"
            )
        if isinstance(guidance_in_channels, int):
            guidance_in_channels = [guidance_in_channels] * n
        self.guidance = nn.ModuleList([
            GuidanceProjection(c, u, g, 2 ** (i + 1)) if g > 0 else nn.Identity()
            for i, (c, u, g) in enumerate(
                zip(guidance_in_channels, guidance_up_channels, guidance_dims))
        ])
        self.guidance_dims = tuple(int(g) for g in guidance_dims)
        dims = [hidden_dim] + list(decoder_dims)
        self.blocks = nn.ModuleList([
            UpBlock(dims[i], dims[i + 1], guidance_dims[i], group_channels) for i in range(n)
        ])
        self.head = nn.Conv2d(dims[-1], 1, 3, padding=1)
        self.scale = 2 ** n

    def project_guidance(self, features: Sequence[torch.Tensor]) -> List[Optional[torch.Tensor]]:
        """(B, W, h, w) raw CLIP block maps -> per-stage guidance (B, g_i, 2^(i+1) h, ...)."""
        out = []
        for i, g in enumerate(self.guidance_dims):
            if g == 0:
                out.append(None)
                continue
            if i >= len(features):
                raise ValueError(f"decoder stage {i} needs a guidance feature; got {len(features)}")
            out.append(self.guidance[i](features[i]))
        return out

    def forward(self, x: torch.Tensor, features: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        """
        Args:
            x (Tensor): (B, C, T, h, w) aggregated cost embedding.
            features (list[Tensor]): (B, W, h, w) CLIP block maps, one per guided stage.
        Returns:
            Tensor: (B, T, 4h, 4w) logits (2^stages in general).
        """
        B, C, T, h, w = x.shape
        guidance = self.project_guidance(features)
        y = x.transpose(1, 2).reshape(B * T, C, h, w)
        for blk, g in zip(self.blocks, guidance):
            y = blk(y, g)
        y = self.head(y)  # (N, 1, 4h, 4w)
        return y.reshape(B, T, *y.shape[-2:])
