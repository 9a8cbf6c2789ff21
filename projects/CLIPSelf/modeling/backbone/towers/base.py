"""The two short protocols every tower-family adapter implements (docs/dense_features.md §9).

An adapter wraps one open_clip ``model.visual`` (it keeps a reference, it owns no parameters:
the wrapper module registers ``visual`` itself, so state-dict keys stay open_clip's) and tells
the wrapper how to run it:

:class:`TransformerTower` (ViT families, run by ``CLIPViT``'s token loop)
    tokens in (``embed``, ``pos_param``, ``rope_spec``, ``attn_bias``), the blocks (``blocks``,
    ``attn_input``, ``qkv``, ``value``, ``attn_output``, ``mlp_branch``: one pre- or post-norm
    block split into the pieces the last-block modes recombine), the heads (``tokens_to_clip``:
    the per-location head on patch tokens; ``pool``: open_clip's pooled embedding) and the
    geometry (``patch_size``, ``pretrain_grid``, ``width``, ``num_heads``,
    ``num_prefix_tokens``).

:class:`ConvTower` (CNN / hybrid families, run by ``CLIPConvTower``)
    ``forward_stages`` (the un-pooled last map and tapped stage maps), ``dense`` (the
    per-location head on that map), ``pool`` (open_clip's pooled embedding) and the geometry
    (``stride``, ``stage_strides``, ``stage_channels``).

Shape shorthand: B images, N tokens (prefix tokens first), C width, H heads, d head dim,
D CLIP embedding dim, h/w grid.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.utils.checkpoint
from torch import nn

__all__ = ["TowerUnsupported", "RopeSpec", "TransformerTower", "ConvTower"]


class TowerUnsupported(NotImplementedError):
    """A tower (or one of its options) this project cannot turn into dense features; the message
    says why."""


class RopeSpec(NamedTuple):
    """Settings of a tower's 2-D RoPE (``dense_ops.build_rope_table`` arguments)."""

    head_dim: int
    ref_grid: Optional[Tuple[int, int]]
    temperature: float
    grid_offset: float
    grid_indexing: str
    rotate_half: bool


class TransformerTower:
    """Protocol of a ViT-family adapter; subclasses fill the geometry in ``__init__``.

    Attributes:
        family (str): short family name ("openai", "timm_vit", "eva").
        patch_size (int): input pixels per token (a hybrid conv stem counts as one patch).
        pretrain_grid (tuple[int, int]): token grid of the tower's native input size.
        width (int): C. num_heads (int): H of the blocks.
        num_prefix_tokens (int): class (+ register) tokens before the patch tokens (0 for SigLIP).
        has_class_token (bool): a class token is among the prefix tokens.
        embed_dim (int): D.
    """

    family = ""
    patch_size: int
    pretrain_grid: Tuple[int, int]
    width: int
    num_heads: int
    num_prefix_tokens: int
    has_class_token: bool

    def __init__(self, visual: nn.Module, embed_dim: int):
        self.visual = visual
        self.embed_dim = int(embed_dim)

    @classmethod
    def matches(cls, visual: nn.Module) -> bool:
        """Whether this adapter is the one for ``visual`` (its checks may still reject it)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ tokens in
    @property
    def blocks(self) -> Sequence[nn.Module]:
        raise NotImplementedError

    def pos_param(self) -> Tuple[Optional[torch.Tensor], int]:
        """(absolute positional embedding parameter or None, prefix tokens it covers)."""
        raise NotImplementedError

    def embed(self, x: torch.Tensor, pos: Optional[torch.Tensor]) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N, C) tokens before block 0, ``pos`` resized to the grid."""
        raise NotImplementedError

    def rope_spec(self) -> Optional[RopeSpec]:
        """The tower's RoPE settings, or None without RoPE."""
        return None

    def rope_prefix(self, blk: nn.Module) -> int:
        """Leading tokens that RoPE leaves alone in ``blk``."""
        return self.num_prefix_tokens

    def attn_bias(
        self, blk: nn.Module, grid: Sequence[int], device: torch.device
    ) -> Optional[torch.Tensor]:
        """The block's own additive logit bias for ``grid`` (relative positions), broadcastable
        to (B, H, N, N), or None."""
        return None

    # ------------------------------------------------------------------ blocks
    def attn_input(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) residual stream -> the attention's input (pre-norm: ``norm1(x)``)."""
        raise NotImplementedError

    def qkv(self, blk: nn.Module, y: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, N, C) -> q, k, v each (B, H, N, d), q/k norms applied (RoPE not yet)."""
        raise NotImplementedError

    def value(self, blk: nn.Module, y: torch.Tensor) -> torch.Tensor:
        """Value projection only (the "v" mode): (B, N, C) -> (B, H, N, d)."""
        raise NotImplementedError

    def attn_output(self, blk: nn.Module, o: torch.Tensor) -> torch.Tensor:
        """Per-head output (B, H, N, d) -> residual update (B, N, C)."""
        raise NotImplementedError

    def mlp_branch(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) residual stream -> MLP residual update (B, N, C)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ heads
    def tokens_to_clip(self, t: torch.Tensor) -> torch.Tensor:
        """Per-location head on patch tokens: (B, M, C) -> (B, M, D), unnormalised."""
        raise NotImplementedError

    def pool(self, t: torch.Tensor) -> torch.Tensor:
        """(B, N, C) final tokens -> (B, D) image embedding exactly as open_clip pools."""
        raise NotImplementedError

    # ------------------------------------------------------------------ freezing
    def stem_params(self) -> Tuple[List[nn.Parameter], List[nn.Parameter]]:
        """(stem parameters, positional-embedding parameters): the first two lock groups."""
        raise NotImplementedError


def run_stage(stage: nn.Module, x: torch.Tensor, checkpoint: bool) -> torch.Tensor:
    """``stage(x)``, with activation checkpointing when ``checkpoint``."""
    if checkpoint:
        return torch.utils.checkpoint.checkpoint(stage, x, use_reentrant=False)
    return stage(x)


class ConvTower:
    """Protocol of a CNN / hybrid adapter.

    Attributes:
        family (str): "modified_resnet" or "timm_cnn".
        stride (int): input pixels per cell of the last map (the dense map).
        stage_strides (list[int]), stage_channels (list[int]): per stage (stem excluded).
        pretrain_grid (tuple[int, int]): the last map's grid at the native input size.
        last_block_modes (tuple[str]): the ``dense_ops.LAST_BLOCK_MODES`` its head supports.
        embed_dim (int): D.
    """

    family = ""
    stride: int
    stage_strides: List[int]
    stage_channels: List[int]
    pretrain_grid: Tuple[int, int]
    last_block_modes: Tuple[str, ...] = ("v",)

    def __init__(self, visual: nn.Module, embed_dim: int):
        self.visual = visual
        self.embed_dim = int(embed_dim)

    @classmethod
    def matches(cls, visual: nn.Module) -> bool:
        raise NotImplementedError

    def forward_stages(
        self, x: torch.Tensor, taps: Sequence[int] = (), checkpoint: bool = False
    ) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
        """Run the trunk: (B, 3, H, W) -> (the un-pooled map (B, C, h, w) the head pools,
        {stage index: (B, C_i, H/s_i, W/s_i)} for the stages in ``taps``); ``checkpoint``:
        recompute each stage's activations in the backward pass (:func:`run_stage`)."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, h, w), the un-pooled map the head pools."""
        return self.forward_stages(x)[0]

    def pos_param(self) -> Optional[torch.Tensor]:
        """The head's absolute positional embedding ``(prefix + S_h*S_w, C)`` for the native grid
        ``pretrain_grid`` (one prefix slot), or None."""
        return None

    def dense(
        self,
        fmap: torch.Tensor,
        pos: Optional[torch.Tensor] = None,
        mode: str = "v",
        bias: Optional[torch.Tensor] = None,
        impl: str = "sdpa",
    ) -> torch.Tensor:
        """(B, C, h, w) -> (B, D, h, w) per-location embeddings, unnormalised (``pos``: the
        resized :meth:`pos_param`; ``mode`` one of ``last_block_modes``)."""
        raise NotImplementedError

    def pool(self, fmap: torch.Tensor, pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, C, h, w) -> (B, D) image embedding exactly as open_clip pools."""
        raise NotImplementedError

    def check_size(self, height: int, width: int) -> None:
        """Raise for input sizes this tower cannot take (beyond multiples of ``stride``)."""

    def stem_params(self) -> List[nn.Parameter]:
        """Parameters of the stem (the first lock group)."""
        raise NotImplementedError

    def stage_module_names(self) -> List[List[str]]:
        """Names (in ``visual``) of the modules of each stage: one lock group per stage."""
        raise NotImplementedError
