"""CLIP ViT backbone with CLIPSelf dense features (docs/dense_features.md §2, §7, §9,
docs/distillation.md §1, docs/fvit.md §2).

One class, :class:`CLIPViT`, wraps the visual tower of an open_clip model of any transformer
family (open_clip ``VisionTransformer`` incl. CoCa; timm ``VisionTransformer`` incl. SigLIP /
SigLIP2, MobileCLIP-B, ViTamin; timm ``Eva`` incl. EVA02, EVA02-E, PE-Core) through a family
adapter (:mod:`.towers`) and runs it with its own token loop so that:

- any input whose sides are multiples of the patch works (non-square too): the absolute
  positional embedding is resized bicubically without antialiasing (cached per grid) and RoPE
  tables are rebuilt per axis from the tower's own settings;
- the last block can run a different attention mode (``last_block_mode``): the value path of
  CLIPSelf ("v", default), or "vanilla", "qq", "kk", "vv", "csa", "all", with ``drop_residual``,
  ``drop_ffn`` and an optional NACLIP Gaussian prior;
- every attention goes through ``F.scaled_dot_product_attention``.

Outputs:
    ``forward(x)``          dict of tapped residual-stream maps (B, C, h, w) (Detectron2 Backbone)
    ``dense_features(x)``   (B, D, h, w) CLIP-space map, L2-normalised per location
    ``encode_image(x)``     (R, D) image embeddings (the tower's own pooling + head), not
                            normalised

Shape shorthand: B images, C width, D CLIP embedding dim, h/w token grid, N = P + h*w tokens
(P prefix tokens: 1 class token for most towers, 0 for SigLIP).
"""
from collections import OrderedDict
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from detectron2.layers import ShapeSpec
from torch import nn

from .. import dense_ops as ops
from .tower_base import CLIPTowerBase
from .tower_config import (
    CLIP_PIXEL_MEAN,
    CLIP_PIXEL_STD,
    FREEZE_MODES,
    build_visual_tower,
    register_project_model_configs,
    resolve_model_config,
)
from .towers import TowerUnsupported, TransformerTower

__all__ = [
    "CLIPViT", "FREEZE_MODES", "CLIP_PIXEL_MEAN", "CLIP_PIXEL_STD", "resolve_model_config",
    "build_visual_tower", "register_project_model_configs",
]


class _LastBlock(NamedTuple):
    mode: str
    drop_residual: bool
    drop_ffn: bool
    gaussian_std: Optional[float]


class CLIPViT(CLIPTowerBase):
    """CLIP visual transformer as a Detectron2 backbone with CLIPSelf dense features.

    ``forward`` returns raw residual-stream tokens (no final norm, prefix tokens dropped) of the
    blocks in ``out_indices`` as ``block{i}`` maps, plus ``clip_dense`` when ``out_dense``.
    If the last block (``depth - 1``) is tapped, it is the modified last block (docs/fvit.md §2).
    All maps have stride ``patch_size``. ShapeSpec strides are ints; the exact float strides
    are in ``strides_float`` (the same here; F-ViT's upsampled levels of a patch-14 model are
    fractional, 3.5 and 7, and must use float strides).
    """

    def __init__(
        self,
        model_name: Union[str, Mapping] = "EVA02-B-16",
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
        grad_checkpointing: bool = False,
        attn_impl: str = "sdpa",
        strict_load: bool = True,
        cache_dir: Optional[str] = None,
    ):
        """
        Args:
            model_name (str or dict): open_clip model config name, JSON file or dict
                (see :func:`resolve_model_config`).
            pretrained (str or dict or None): None (random init), an open_clip pretrained tag
                (downloaded by open_clip), a checkpoint file (the authors' CLIPSelf/EVA-CLIP
                format, an open_clip CLIP or visual state dict, an F-ViT detector checkpoint),
                or a loaded state dict.
            out_indices (list[int]): 0-based blocks tapped by ``forward``; default: last block.
            out_dense (bool): also return ``clip_dense`` (the :meth:`dense_features` map) from
                ``forward``, sharing the token pass (needs the last block in the pass).
            last_block_mode (str): one of ``dense_ops.LAST_BLOCK_MODES``; "v" = CLIPSelf value
                path (docs/dense_features.md §2).
            drop_residual (bool): last block without the residual around attention.
            drop_ffn (bool): last block without its MLP step.
            gaussian_std (float): NACLIP Gaussian neighbourhood prior (tokens) added to the
                last block's logits; None = off.
            freeze (str): one of :data:`FREEZE_MODES`.
            unlocked_groups (int): lock the tower, then unlock the last N lock groups
                (docs/distillation.md §1, see :meth:`lock`); with ``freeze`` "none" or "all" only.
            autocast_dtype (str): None/"fp32" (default), "bf16" or "fp16": run the tower under
                ``torch.autocast`` on the input's device; outputs are returned in float32.
            grad_checkpointing (bool): activation checkpointing per block while training.
            attn_impl (str): "sdpa" (default) or "math" (materialised softmax, a reference).
            strict_load (bool): raise when the checkpoint misses or adds visual keys.
            cache_dir (str): download directory for open_clip pretrained tags.
        """
        super().__init__()
        self._setup_tower(model_name, pretrained)
        if not isinstance(self.tower, TransformerTower):
            raise TowerUnsupported(
                f"{self.model_name!r} is a {self.tower.family} (CNN) tower, not a ViT: build it "
                "with clipself.modeling.CLIPTower (CLIPConvTower)"
            )
        self._inspect()

        if last_block_mode not in ops.LAST_BLOCK_MODES:
            raise ValueError(
                f"last_block_mode={last_block_mode!r}; choose from {ops.LAST_BLOCK_MODES}"
            )
        if attn_impl not in ("sdpa", "math"):
            raise ValueError(f"attn_impl={attn_impl!r}; use 'sdpa' or 'math'")
        self._setup_options(freeze, autocast_dtype)
        self.last_block = _LastBlock(last_block_mode, drop_residual, drop_ffn, gaussian_std)
        self.attn_impl = attn_impl
        self.grad_checkpointing = grad_checkpointing
        self._pos_cache: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
        self._rope_cache: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()

        # Detectron2 Backbone contract
        out_indices = [self.depth - 1] if out_indices is None else [int(i) for i in out_indices]
        for i in out_indices:
            if not 0 <= i < self.depth:
                raise ValueError(f"out_indices: block {i} outside 0..{self.depth - 1}")
        self.out_indices = sorted(set(out_indices))
        self.out_dense = out_dense
        self._out_features = [f"block{i}" for i in self.out_indices]
        self._out_feature_channels = {n: self.width for n in self._out_features}
        self._out_feature_strides = {n: self.patch_size for n in self._out_features}
        if out_dense:
            self._out_features.append("clip_dense")
            self._out_feature_channels["clip_dense"] = self.embed_dim
            self._out_feature_strides["clip_dense"] = self.patch_size
        self.strides_float = {n: float(s) for n, s in self._out_feature_strides.items()}

        self._setup_weights(pretrained, strict_load, cache_dir)
        self._setup_freeze(freeze, unlocked_groups, self.depth)

    # ------------------------------------------------------------------ structure
    def _inspect(self) -> None:
        """Copy the adapter's geometry (docs/dense_features.md §9)."""
        tw = self.tower
        self.patch_size = int(tw.patch_size)
        self.pretrain_grid = tuple(tw.pretrain_grid)
        self.width = int(tw.width)
        self.num_heads = int(tw.num_heads)
        self.num_prefix_tokens = int(tw.num_prefix_tokens)
        self.depth = len(tw.blocks)
        self._rope_spec = tw.rope_spec()
        self.image_size = (self.pretrain_grid[0] * self.patch_size,
                           self.pretrain_grid[1] * self.patch_size)

    @property
    def _blocks(self) -> Sequence[nn.Module]:
        """The transformer blocks (not registered twice: a property, not an attribute)."""
        return self.tower.blocks

    @property
    def stride(self) -> float:
        """Input pixels per dense-map cell."""
        return float(self.patch_size)

    @property
    def size_divisibility(self) -> int:
        return self.patch_size

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return {"size_divisibility": self.patch_size}

    # ------------------------------------------------------------------ freezing
    def lock_groups(self) -> List[List[nn.Parameter]]:
        """Parameter groups for ``unlocked_groups`` (docs/distillation.md §1), first to last.

        ``[stem]`` (OpenAI-style: ``conv1, class_embedding, ln_pre``; timm: ``patch_embed,
        norm_pre, cls_token``), ``[positional embedding]``, then each block. The final norm and
        the head (``ln_post``/``proj``; timm: ``norm``, ``attn_pool``, ``fc_norm``, ``head``) are
        in no group: never unlocked.
        """
        stem, pos = self.tower.stem_params()
        return [stem, pos] + [list(b.parameters()) for b in self._blocks]

    # ------------------------------------------------------------------ embeddings
    def _pos_param(self) -> Tuple[Optional[torch.Tensor], int]:
        return self.tower.pos_param()

    def pos_embed_for(self, grid: Sequence[int]) -> Optional[torch.Tensor]:
        """Absolute positional embedding resized to ``grid`` (cached per grid while it cannot
        receive gradients). OpenAI: (P + h*w, C); timm: (1, P + h*w, C) (P prefix tokens it
        covers)."""
        param, prefix = self._pos_param()
        grid = (int(grid[0]), int(grid[1]))
        if param is None or grid == self.pretrain_grid:
            return param
        cacheable = not (torch.is_grad_enabled() and param.requires_grad)
        key = (grid, param.device, param.dtype, param.data_ptr(), param._version)
        if cacheable and key in self._pos_cache:
            return self._pos_cache[key]
        out = ops.resize_abs_pos_embed(param, self.pretrain_grid, grid, prefix)
        if cacheable:
            self._pos_cache[key] = out.detach()
            while len(self._pos_cache) > 8:
                self._pos_cache.popitem(last=False)
        return out

    def rope_for(self, grid: Sequence[int], device: torch.device) -> Optional[torch.Tensor]:
        """RoPE table (h*w, 2*head_dim) ``[sin | cos]`` for ``grid`` (cached); None without
        RoPE."""
        spec = self._rope_spec
        if spec is None:
            return None
        key = (int(grid[0]), int(grid[1]), device)
        if key not in self._rope_cache:
            self._rope_cache[key] = ops.build_rope_table(
                key[:2], spec.head_dim, ref_grid=spec.ref_grid, temperature=spec.temperature,
                grid_offset=spec.grid_offset, device=device, grid_indexing=spec.grid_indexing,
                rotate_half=spec.rotate_half,
            )
            while len(self._rope_cache) > 8:
                self._rope_cache.popitem(last=False)
        return self._rope_cache[key]

    def _embed(self, x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N, C) tokens [prefix, patches] with positions, before block 0."""
        return self.tower.embed(x, self.pos_embed_for(grid))

    # ------------------------------------------------------------------ blocks
    def _block(
        self,
        blk: nn.Module,
        x: torch.Tensor,
        rope: Optional[torch.Tensor],
        last: Optional[_LastBlock],
        bias: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """One block (pre- or post-norm, per the adapter); ``last`` (not None) selects the
        modified last-block variant; ``bias`` is added to the attention logits."""
        tw = self.tower
        mode = "vanilla" if last is None else last.mode
        y = tw.attn_input(blk, x)
        if mode == "v":
            o = tw.value(blk, y)
        else:
            q, k, v = tw.qkv(blk, y)
            if rope is not None:
                npt = tw.rope_prefix(blk)
                half = self._rope_spec.rotate_half
                q = torch.cat([q[:, :, :npt], ops.apply_rope(q[:, :, npt:], rope, half)], dim=2)
                k = torch.cat([k[:, :, :npt], ops.apply_rope(k[:, :, npt:], rope, half)], dim=2)
            o = ops.mode_attention(q, k, v, mode, bias=bias, impl=self.attn_impl)
        a = tw.attn_output(blk, o)
        x = a if (last is not None and last.drop_residual) else x + a
        if last is None or not last.drop_ffn:
            x = x + tw.mlp_branch(blk, x)
        return x

    def run_tokens(
        self,
        x: torch.Tensor,
        stop: Optional[int] = None,
        taps: Sequence[int] = (),
        modify_last: bool = True,
    ) -> Tuple[torch.Tensor, Dict[int, torch.Tensor], Tuple[int, int]]:
        """Token pass through blocks ``0..stop``.

        Args:
            x (Tensor): (B, 3, H, W) normalised images, sides multiples of the patch.
            stop (int): last block to run (default ``depth - 1``).
            taps (list[int]): blocks whose outputs are returned.
            modify_last (bool): run block ``depth - 1`` with ``self.last_block`` (else vanilla).
        Returns:
            tuple: (tokens (B, N, C) after ``stop``, {block: (B, N, C)}, grid (h, w)).
        """
        grid = ops.check_image_size(x.shape[-2], x.shape[-1], self.patch_size)
        stop = self.depth - 1 if stop is None else stop
        t = self._embed(x, grid)
        rope = self.rope_for(grid, t.device)
        last = self.last_block if modify_last else None
        prior = None
        if last is not None and last.gaussian_std and last.mode != "v":
            prior = ops.gaussian_neighbour_bias(
                grid, last.gaussian_std, self.num_prefix_tokens, device=t.device
            )
        ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        taps = set(taps)
        out = {}
        for i in range(stop + 1):
            blk = self._blocks[i]
            is_last = i == self.depth - 1
            bias = self.tower.attn_bias(blk, grid, t.device)  # relative positions, or None
            if is_last and prior is not None:
                bias = prior if bias is None else bias + prior
            args = (blk, t, rope, last if is_last else None, bias)
            if ckpt:
                t = torch.utils.checkpoint.checkpoint(self._block, *args, use_reentrant=False)
            else:
                t = self._block(*args)
            if i in taps:
                out[i] = t
        return t, out, grid

    # ------------------------------------------------------------------ heads
    def tokens_to_clip(self, t: torch.Tensor) -> torch.Tensor:
        """Final norm + head per token (docs/dense_features.md §2, step 4; §9 per family):
        (B, M, C) patch tokens -> (B, M, D), unnormalised."""
        return self.tower.tokens_to_clip(t)

    def _pool_image(self, t: torch.Tensor) -> torch.Tensor:
        """(B, N, C) final tokens -> (B, D) image embedding exactly as open_clip pools."""
        return self.tower.pool(t)

    def _dense_from_tokens(self, t: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """(B, N, C) -> (B, D, h, w), L2-normalised per location, float32."""
        B = t.shape[0]
        patches = t[:, self.num_prefix_tokens:]
        d = F.normalize(self.tokens_to_clip(patches).float(), dim=-1)  # (B, h*w, D)
        return d.transpose(1, 2).reshape(B, -1, grid[0], grid[1])

    # ------------------------------------------------------------------ public API
    def dense_features(self, x: torch.Tensor) -> torch.Tensor:
        """CLIPSelf dense map (docs/dense_features.md §2).

        Args:
            x (Tensor): (B, 3, H, W) normalised images; H, W multiples of the patch.
        Returns:
            Tensor: (B, D, H/p, W/p) float32, L2-normalised per location.
        """
        with self._context(x):
            t, _, grid = self.run_tokens(x)
            return self._dense_from_tokens(t, grid)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Image embeddings like open_clip's ``model.visual(x)`` (vanilla blocks, the tower's own
        pooling: class token, average or attention pool, then the head).

        Any size that is a multiple of the patch works (positions resized as for dense maps).

        Args:
            x (Tensor): (R, 3, s, s) normalised crops.
        Returns:
            Tensor: (R, D) float32, not normalised.
        """
        with self._context(x):
            t, _, _ = self.run_tokens(x, modify_last=False)
            return self._pool_image(t).float()

    def forward(self, x: torch.Tensor, dense: Optional[bool] = None) -> Dict[str, torch.Tensor]:
        """Tapped maps for Detectron2 heads.

        Args:
            x (Tensor): (B, 3, H, W) normalised images; H, W multiples of the patch.
            dense (bool): also return ``clip_dense``; None = ``self.out_dense``.
        Returns:
            dict[str, Tensor]: ``block{i}`` -> (B, C, H/p, W/p) raw residual tokens (prefix tokens
            dropped, no final norm); ``clip_dense`` -> (B, D, H/p, W/p) when ``dense``.
        """
        dense = self.out_dense if dense is None else bool(dense)
        with self._context(x):
            stop = self.depth - 1 if dense else max(self.out_indices)
            t, taps, grid = self.run_tokens(x, stop=stop, taps=self.out_indices)
            B = x.shape[0]
            out = {}
            for i in self.out_indices:
                m = taps[i][:, self.num_prefix_tokens:].transpose(1, 2)
                m = m.reshape(B, self.width, grid[0], grid[1])
                out[f"block{i}"] = m.float() if self.autocast_dtype is not None else m
            if dense:
                out["clip_dense"] = self._dense_from_tokens(t, grid)
            return out

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            n: ShapeSpec(
                channels=self._out_feature_channels[n], stride=self._out_feature_strides[n]
            )
            for n in self._out_features
        }
