"""One entry point for any open_clip tower (docs/dense_features.md §9): :func:`CLIPTower` builds the
family adapter and returns :class:`~.clip_vit.CLIPViT` for transformer towers or
:class:`CLIPConvTower` for CNN / hybrid towers (ModifiedResNet, ConvNeXt, FastViT-MCi, Swin).

Both answer the same calls: ``dense_features(x) -> (B, D, h, w)`` (L2-normalised per location),
``encode_image(x) -> (B, D)`` (open_clip's ``model.visual(x)``), ``stride`` (float input pixels
per dense cell), ``embed_dim``, and a Detectron2 ``forward`` of tapped maps.

Shape shorthand: B images, C channels, D CLIP embedding dim, h/w dense grid (H / stride).
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from torch import nn

from .. import dense_ops as ops
from .clip_vit import CLIPViT
from .tower_base import CLIPTowerBase
from .tower_config import build_visual_tower, resolve_model_config
from .towers import ConvTower, TowerUnsupported, TransformerTower, tower_adapter

__all__ = ["CLIPTower", "CLIPConvTower", "TowerGeometry", "tower_kind", "tower_geometry",
           "pyramid_taps"]


@dataclass(frozen=True)
class TowerGeometry:
    """What the heads need to know of a tower, read from its open_clip config.

    Attributes:
        kind (str): "transformer" or "conv".
        family (str): the adapter's family name ("openai", "timm_vit", "eva", ...).
        stride (float): input pixels per dense cell (the patch size of a ViT).
        width (int): channels of the tapped maps (ViT width; last-stage channels of a CNN).
        depth (int): transformer blocks (CNN: stages).
        embed_dim (int): D of the CLIP embedding.
        image_size (tuple[int, int]): native input size.
    """

    kind: str
    family: str
    stride: float
    width: int
    depth: int
    embed_dim: int
    image_size: tuple


def _adapter(model_name: Union[str, Mapping]):
    _, cfg = resolve_model_config(model_name)
    with torch.device("meta"):
        return tower_adapter(build_visual_tower(cfg), int(cfg["embed_dim"]))


def tower_kind(model_name: Union[str, Mapping]) -> str:
    """"transformer" or "conv" for an open_clip model (built on the meta device, no weights).

    Args:
        model_name (str or dict): as :func:`~.tower_config.resolve_model_config`.
    Raises:
        TowerUnsupported: for a tower family without a dense path (the message says why).
    """
    return "transformer" if isinstance(_adapter(model_name), TransformerTower) else "conv"


def tower_geometry(model_name: Union[str, Mapping]) -> TowerGeometry:
    """The :class:`TowerGeometry` of an open_clip model (built on the meta device, no weights):
    what configs of F-ViT, the panoptic head and CAT-Seg take from the tower (taps, strides,
    widths) instead of hard-coding them."""
    tw = _adapter(model_name)
    if isinstance(tw, TransformerTower):
        grid = tuple(tw.pretrain_grid)
        return TowerGeometry(
            "transformer", tw.family, float(tw.patch_size), int(tw.width), len(tw.blocks),
            tw.embed_dim, (grid[0] * tw.patch_size, grid[1] * tw.patch_size))
    grid = tuple(tw.pretrain_grid)
    return TowerGeometry(
        "conv", tw.family, float(tw.stride), int(tw.stage_channels[-1]), len(tw.stage_strides),
        tw.embed_dim, (grid[0] * tw.stride, grid[1] * tw.stride))


def pyramid_taps(depth: int) -> List[int]:
    """The 4 blocks F-ViT and the panoptic head tap for a ``depth``-block ViT (docs/fvit.md §2):
    ``[d/4, d/4 + d/6, d/4 + d/3, d - 1]``, i.e. [3, 5, 7, 11] for 12 blocks (B/16) and
    [6, 10, 14, 23] for 24 (L/14) as in the paper; other depths follow the same spacing."""
    if depth < 4:
        raise ValueError(f"a 4-level pyramid needs at least 4 blocks; the tower has {depth}")
    taps = [depth // 4, depth // 4 + depth // 6, depth // 4 + depth // 3, depth - 1]
    for i in range(1, 4):  # keep them distinct and increasing for shallow towers
        taps[i] = max(taps[i], taps[i - 1] + 1)
    if taps[-1] != depth - 1:
        taps = list(range(depth - 4, depth))
    return taps


def CLIPTower(model_name: Union[str, Mapping], pretrained: Any = None, **options) -> CLIPTowerBase:
    """Any open_clip tower with CLIPSelf dense features (the public entry point).

    Args:
        model_name (str or dict): an open_clip model name (``open_clip.list_models()``), a
            registered / project config name, a ``.json`` config or a config dict.
        pretrained (str or dict or None): None (random init), an open_clip pretrained tag, a
            checkpoint file, or a loaded state dict.
        **options: keyword arguments of :class:`CLIPViT` (transformer towers) or
            :class:`CLIPConvTower` (CNN towers), e.g. ``out_indices``, ``last_block_mode``,
            ``freeze``, ``autocast_dtype``.
    Returns:
        CLIPViT or CLIPConvTower.
    Raises:
        ValueError: an unknown model name (the message lists the closest open_clip names).
        TowerUnsupported: a tower without a meaningful per-location embedding (says why).
    """
    if tower_kind(model_name) == "transformer":
        return CLIPViT(model_name, pretrained=pretrained, **options)
    return CLIPConvTower(model_name, pretrained=pretrained, **options)


class CLIPConvTower(CLIPTowerBase):
    """CNN / hybrid CLIP tower as a Detectron2 backbone with dense features (MaskCLIP-style
    per-location head, docs/dense_features.md §9.4-§9.5).

    ``forward`` returns the outputs of the stages in ``out_indices`` as ``stage{i}`` maps (0-based
    residual stages, stem excluded; ModifiedResNet: ``layer1..layer4``), plus ``clip_dense`` when
    ``out_dense``. The dense map has stride :attr:`stride` (32 for ResNet / ConvNeXt / Swin, 32
    or 64 for FastViT-MCi).
    """

    def __init__(
        self,
        model_name: Union[str, Mapping] = "RN50",
        *,
        pretrained: Optional[Union[str, Mapping]] = None,
        out_indices: Optional[Sequence[int]] = None,
        out_dense: bool = False,
        last_block_mode: str = "v",
        drop_residual: bool = False,
        drop_ffn: bool = False,
        gaussian_std: Optional[float] = None,
        freeze: str = "none",
        unlocked_groups: Optional[int] = None,
        autocast_dtype: Optional[str] = None,
        attn_impl: str = "sdpa",
        strict_load: bool = True,
        cache_dir: Optional[str] = None,
        grad_checkpointing: bool = False,
        norm_eval: bool = True,
    ):
        """
        Args:
            model_name (str or dict): open_clip model config name, JSON file or dict.
            pretrained (str or dict or None): as :class:`CLIPViT`.
            out_indices (list[int]): 0-based stages tapped by ``forward``; default: last stage.
            out_dense (bool): also return ``clip_dense`` from ``forward``.
            last_block_mode (str): for ModifiedResNet, the token mixing of the attention pool
                (any ``dense_ops.LAST_BLOCK_MODES`` entry; "v" = MaskCLIP value path); other
                towers take only "v" (no attention in their head).
            drop_residual (bool), drop_ffn (bool): not applicable (no residual / MLP in a CNN
                head); True raises.
            gaussian_std (float): NACLIP prior in the attention pool (modes other than "v").
            freeze (str): one of ``FREEZE_MODES`` ("clipself": every stage trainable, the stem
                and the head frozen).
            unlocked_groups (int): lock, then unlock the last N groups ([stem], then stages).
            autocast_dtype (str): None/"fp32", "bf16" or "fp16".
            attn_impl (str): "sdpa" or "math" for the attention-pool modes.
            strict_load (bool): raise when the checkpoint misses or adds visual keys.
            cache_dir (str): download directory for open_clip pretrained tags.
            grad_checkpointing (bool): activation checkpointing per stage while training.
            norm_eval (bool): keep BatchNorm layers in eval mode (running statistics; their
                affine weights still train) when the tower trains: CLIPSelf's batches of 1-2
                high-resolution images per device give poor batch statistics, and a
                checkpointed stage would update them twice.
        """
        super().__init__()
        self._setup_tower(model_name, pretrained)
        if not isinstance(self.tower, ConvTower):
            raise TowerUnsupported(
                f"{self.model_name!r} is a transformer tower: build it with CLIPViT or CLIPTower"
            )
        tw = self.tower
        if last_block_mode not in tw.last_block_modes:
            raise ValueError(
                f"last_block_mode={last_block_mode!r} does not apply to {tw.family} towers "
                f"(choose from {tw.last_block_modes}): "
                + ("its head has no attention to modify" if len(tw.last_block_modes) == 1
                   else "see dense_ops.LAST_BLOCK_MODES")
            )
        if drop_residual or drop_ffn:
            raise ValueError(
                f"drop_residual / drop_ffn do not apply to {tw.family} towers: their head has "
                "no residual connection and no MLP"
            )
        if attn_impl not in ("sdpa", "math"):
            raise ValueError(f"attn_impl={attn_impl!r}; use 'sdpa' or 'math'")
        self._setup_options(freeze, autocast_dtype)
        self.last_block_mode = last_block_mode
        self.gaussian_std = gaussian_std
        self.attn_impl = attn_impl
        self.grad_checkpointing = grad_checkpointing
        self.norm_eval = norm_eval
        self.depth = len(tw.stage_strides)
        self.pretrain_grid = tuple(tw.pretrain_grid)
        self.image_size = (self.pretrain_grid[0] * tw.stride, self.pretrain_grid[1] * tw.stride)
        self._pos_cache: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()

        out_indices = [self.depth - 1] if out_indices is None else [int(i) for i in out_indices]
        for i in out_indices:
            if not 0 <= i < self.depth:
                raise ValueError(f"out_indices: stage {i} outside 0..{self.depth - 1}")
        self.out_indices = sorted(set(out_indices))
        self.out_dense = out_dense
        self._out_features = [f"stage{i}" for i in self.out_indices]
        self._out_feature_channels = {f"stage{i}": tw.stage_channels[i] for i in self.out_indices}
        self._out_feature_strides = {f"stage{i}": tw.stage_strides[i] for i in self.out_indices}
        if out_dense:
            self._out_features.append("clip_dense")
            self._out_feature_channels["clip_dense"] = self.embed_dim
            self._out_feature_strides["clip_dense"] = tw.stride
        self.strides_float = {n: float(s) for n, s in self._out_feature_strides.items()}

        self._setup_weights(pretrained, strict_load, cache_dir)
        self._setup_freeze(freeze, unlocked_groups, self.depth)

    def train(self, mode: bool = True):
        """As :meth:`CLIPTowerBase.train`; with ``norm_eval`` BatchNorm layers stay in eval."""
        super().train(mode)
        if self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------------ structure
    @property
    def stride(self) -> float:
        """Input pixels per dense-map cell."""
        return float(self.tower.stride)

    @property
    def size_divisibility(self) -> int:
        return int(self.tower.stride)

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return {"size_divisibility": int(self.tower.stride)}

    def lock_groups(self) -> List[List[nn.Parameter]]:
        """``[stem]``, then one group per stage; the head (attention pool / norm + projection)
        is in no group: never unlocked."""
        stem = self.tower.stem_params()
        stages = self._stage_params()
        return [stem] + stages

    def _stage_params(self) -> List[List[nn.Parameter]]:
        return [
            [p for name in names for p in self.visual.get_submodule(name).parameters()]
            for names in self.tower.stage_module_names()
        ]

    # ------------------------------------------------------------------ positions
    def pos_embed_for(self, grid: Sequence[int]) -> Optional[torch.Tensor]:
        """The head's positional embedding resized to ``grid`` (ModifiedResNet; None otherwise),
        cached per grid while it cannot receive gradients."""
        param = self.tower.pos_param()
        grid = (int(grid[0]), int(grid[1]))
        if param is None or grid == self.pretrain_grid:
            return param
        cacheable = not (torch.is_grad_enabled() and param.requires_grad)
        key = (grid, param.device, param.dtype, param.data_ptr(), param._version)
        if cacheable and key in self._pos_cache:
            return self._pos_cache[key]
        out = ops.resize_abs_pos_embed(param, self.pretrain_grid, grid, 1)
        if cacheable:
            self._pos_cache[key] = out.detach()
            while len(self._pos_cache) > 8:
                self._pos_cache.popitem(last=False)
        return out

    # ------------------------------------------------------------------ passes
    def _run(self, x: torch.Tensor, taps: Sequence[int] = ()):
        H, W = x.shape[-2:]
        ops.check_image_size(H, W, self.tower.stride)
        self.tower.check_size(H, W)
        ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        return self.tower.forward_stages(x, taps, checkpoint=ckpt)

    def _dense_from_map(self, fmap: torch.Tensor) -> torch.Tensor:
        grid = fmap.shape[-2:]
        bias = None
        if self.gaussian_std and self.last_block_mode != "v":
            bias = ops.gaussian_neighbour_bias(grid, self.gaussian_std, 1, device=fmap.device)
        d = self.tower.dense(
            fmap, self.pos_embed_for(grid), mode=self.last_block_mode, bias=bias,
            impl=self.attn_impl,
        )
        return F.normalize(d.float(), dim=1)

    def dense_features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-location CLIP-space map (docs/dense_features.md §9).

        Args:
            x (Tensor): (B, 3, H, W) normalised images; H, W multiples of :attr:`stride`.
        Returns:
            Tensor: (B, D, H/s, W/s) float32, L2-normalised per location.
        """
        with self._context(x):
            fmap, _ = self._run(x)
            return self._dense_from_map(fmap)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Image embeddings like open_clip's ``model.visual(x)`` (positions of an attention pool
        resized for other sizes).

        Args:
            x (Tensor): (R, 3, s, s) normalised crops, sides multiples of :attr:`stride`.
        Returns:
            Tensor: (R, D) float32, not normalised.
        """
        with self._context(x):
            fmap, _ = self._run(x)
            return self.tower.pool(fmap, self.pos_embed_for(fmap.shape[-2:])).float()

    def forward(self, x: torch.Tensor, dense: Optional[bool] = None) -> Dict[str, torch.Tensor]:
        """Tapped stage maps for Detectron2 heads.

        Args:
            x (Tensor): (B, 3, H, W) normalised images.
            dense (bool): also return ``clip_dense``; None = ``self.out_dense``.
        Returns:
            dict[str, Tensor]: ``stage{i}`` -> (B, C_i, H/s_i, W/s_i); ``clip_dense`` ->
            (B, D, H/s, W/s) when ``dense``.
        """
        dense = self.out_dense if dense is None else bool(dense)
        with self._context(x):
            fmap, taps = self._run(x, self.out_indices)
            out = {}
            for i in self.out_indices:
                m = taps[i]
                out[f"stage{i}"] = m.float() if self.autocast_dtype is not None else m
            if dense:
                out["clip_dense"] = self._dense_from_map(fmap)
            return out

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            n: ShapeSpec(
                channels=self._out_feature_channels[n], stride=self._out_feature_strides[n]
            )
            for n in self._out_features
        }
