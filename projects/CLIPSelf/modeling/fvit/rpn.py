"""RPN head with normalised convolutions (F-ViT on LVIS, docs/fvit.md §4)."""
from typing import List

from detectron2.layers import Conv2d, get_norm
from detectron2.modeling.proposal_generator import StandardRPNHead
from torch import nn

__all__ = ["NormRPNHead"]


class NormRPNHead(StandardRPNHead):
    """``StandardRPNHead`` whose shared 3x3 convs carry a norm (no bias) before the ReLU."""

    def __init__(
        self,
        *,
        in_channels: int,
        num_anchors: int,
        box_dim: int = 4,
        conv_dims: List[int] = (256, 256),
        norm: str = "",
    ):
        super().__init__(
            in_channels=in_channels, num_anchors=num_anchors, box_dim=box_dim, conv_dims=conv_dims
        )
        if not norm:
            return
        self.conv = nn.Sequential()
        cur = in_channels
        for k, d in enumerate(conv_dims):
            d = cur if d == -1 else d
            conv = Conv2d(
                cur, d, kernel_size=3, stride=1, padding=1, bias=False,
                norm=get_norm(norm, d), activation=nn.ReLU(),
            )
            nn.init.normal_(conv.weight, std=0.01)
            self.conv.add_module(f"conv{k}", conv)
            cur = d
