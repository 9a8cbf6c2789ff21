"""CLIP ViT backbone with CLIPSelf dense features (docs/dense_features.md §2, docs/distillation.md
§1, docs/fvit.md §2, docs/dense_features.md §7).

One class, :class:`CLIPViT`, wraps the visual tower of an open_clip model (OpenAI-style
``VisionTransformer`` or an EVA02 timm trunk) and runs it with its own token loop so that:

- any input whose sides are multiples of the patch works (non-square too): the absolute
  positional embedding is resized bicubically without antialiasing (cached per grid) and the
  EVA02 RoPE tables are rebuilt per axis (reference grid 16x16);
- the last block can run a different attention mode (``last_block_mode``): the value path of
  CLIPSelf ("v", default), or "vanilla", "qq", "kk", "vv", "csa", "all", with ``drop_residual``,
  ``drop_ffn`` and an optional NACLIP Gaussian prior;
- every attention goes through ``F.scaled_dot_product_attention``.

Outputs:
    ``forward(x)``          dict of tapped residual-stream maps (B, C, h, w) (Detectron2 Backbone)
    ``dense_features(x)``   (B, D, h, w) CLIP-space map, L2-normalised per location
    ``encode_image(x)``     (R, D) image embeddings (class token + head), not normalised

Shape shorthand: B images, C width, D CLIP embedding dim, h/w token grid, N = 1 + h*w tokens.
"""
import contextlib
import copy
import json
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import open_clip
import timm
import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone
from omegaconf import DictConfig, OmegaConf
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import _build_vision_tower
from open_clip.pretrained import download_pretrained, get_pretrained_cfg
from timm.layers import RotaryEmbeddingCat
from timm.models.eva import EvaAttention, EvaBlock
from torch import nn

from ...checkpoint import load_visual_weights
from .. import dense_ops as ops

__all__ = [
    "CLIPViT", "FREEZE_MODES", "CLIP_PIXEL_MEAN", "CLIP_PIXEL_STD", "resolve_model_config",
    "build_visual_tower",
]

logger = logging.getLogger(__name__)

#: OpenAI CLIP's input normalisation in 0-255 RGB units (open_clip's OPENAI_DATASET_MEAN/STD):
#: every model that feeds a CLIP tower normalises with these
CLIP_PIXEL_MEAN = tuple(255 * m for m in OPENAI_DATASET_MEAN)
CLIP_PIXEL_STD = tuple(255 * s for s in OPENAI_DATASET_STD)

#: "none": all trainable; "all": no parameter trainable (train/eval still follow the caller);
#: "clipself": docs/distillation.md §1, every block trainable, embeddings/final norm/head frozen;
#: "frozen": no parameter trainable, always eval, forward under no_grad (F-ViT, teachers).
FREEZE_MODES = ("none", "all", "clipself", "frozen")

_DTYPES = {
    None: None, "fp32": None, "float32": None, "none": None,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16,
}


class _LastBlock(NamedTuple):
    mode: str
    drop_residual: bool
    drop_ffn: bool
    gaussian_std: Optional[float]


#: open_clip model configs shipped with the project (e.g. the synthetic world's toy CLIP)
PROJECT_MODEL_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_configs")


def register_project_model_configs() -> bool:
    """Make the project's open_clip configs (``ToyCLIP-*``) known to open_clip.

    Returns:
        bool: True if something was newly registered.
    """
    names = [f[:-5] for f in os.listdir(PROJECT_MODEL_CONFIGS) if f.endswith(".json")]
    if all(n in open_clip.list_models() for n in names):
        return False
    open_clip.add_model_config(PROJECT_MODEL_CONFIGS)
    return True


def resolve_model_config(model_name: Union[str, Mapping]) -> Tuple[str, Dict[str, Any]]:
    """The open_clip model config for a name, a JSON file or a dict.

    Args:
        model_name (str or dict): a built-in open_clip name ("EVA02-B-16", "ViT-B-16", ...), a
            name registered with ``open_clip.add_model_config``, a path to a ``.json`` config,
            or the config itself (an optional ``"name"`` entry names it).
    Returns:
        tuple[str, dict]: (display name, config with ``embed_dim`` and ``vision_cfg``).
    """
    if isinstance(model_name, Mapping) or hasattr(model_name, "items"):
        if isinstance(model_name, DictConfig):
            model_name = OmegaConf.to_container(model_name, resolve=True)
        cfg = copy.deepcopy(dict(model_name))
        name = str(cfg.pop("name", "custom"))
    elif isinstance(model_name, str) and model_name.endswith(".json") and os.path.isfile(
        model_name
    ):
        with open(model_name) as f:
            cfg = json.load(f)
        cfg = cfg.get("model_cfg", cfg)
        name = os.path.splitext(os.path.basename(model_name))[0]
    elif isinstance(model_name, str):
        cfg = open_clip.get_model_config(model_name)
        if cfg is None and register_project_model_configs():
            cfg = open_clip.get_model_config(model_name)
        if cfg is None:
            raise ValueError(
                f"unknown open_clip model config {model_name!r}: use a built-in name "
                "(open_clip.list_models()), a .json config file, a config dict, or register one "
                "with open_clip.add_model_config(path)"
            )
        name = model_name
    else:
        raise TypeError(f"model_name must be a str or a dict, got {type(model_name).__name__}")
    if "vision_cfg" not in cfg or "embed_dim" not in cfg:
        raise ValueError(f"model config {name!r} needs 'embed_dim' and 'vision_cfg'")
    return name, cfg


class _TimmTower(nn.Module):
    """open_clip ``TimmModel`` layout (``trunk.*``, ``head.*``) for a timm model built with extra
    keyword arguments (``vision_cfg["timm_model_kwargs"]``, e.g. a tiny EVA02 for tests)."""

    def __init__(
        self,
        model_name: str,
        embed_dim: int,
        pool: str = "token",
        proj: Optional[str] = None,
        proj_bias: bool = False,
        drop: float = 0.0,
        timm_kwargs: Optional[Dict[str, Any]] = None,
    ):
        super().__init__()
        kwargs = dict(timm_kwargs or {})
        if proj in (None, "", "none"):
            self.trunk = timm.create_model(
                model_name, num_classes=0 if proj == "none" else embed_dim, global_pool=pool,
                pretrained=False, **kwargs,
            )
            self.head = nn.Sequential()
        elif proj == "linear":
            self.trunk = timm.create_model(model_name, pretrained=False, **kwargs)
            self.trunk.reset_classifier(0, **(dict(global_pool=pool) if pool else {}))
            self.head = nn.Sequential(OrderedDict([
                ("drop", nn.Dropout(drop)),
                ("proj", nn.Linear(self.trunk.num_features, embed_dim, bias=proj_bias)),
            ]))
        else:
            raise NotImplementedError(f"timm_proj={proj!r} is not supported with timm_model_kwargs")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def build_visual_tower(cfg: Mapping[str, Any]) -> nn.Module:
    """Build (random init) the visual tower of an open_clip model config.

    ``vision_cfg`` may carry ``timm_model_kwargs`` (this project's extension) to override timm
    constructor arguments such as depth or width.

    Args:
        cfg (dict): open_clip model config.
    Returns:
        nn.Module: open_clip ``VisionTransformer`` / ``TimmModel`` (or the equivalent
        :class:`_TimmTower`), whose ``state_dict`` matches ``model.visual`` of open_clip.
    """
    vision_cfg = dict(cfg["vision_cfg"])
    timm_kwargs = vision_cfg.pop("timm_model_kwargs", None)
    if timm_kwargs:
        if not vision_cfg.get("timm_model_name"):
            raise ValueError("timm_model_kwargs needs timm_model_name in vision_cfg")
        return _TimmTower(
            vision_cfg["timm_model_name"], cfg["embed_dim"],
            pool=vision_cfg.get("timm_pool", "avg"),
            proj=vision_cfg.get("timm_proj", "linear"),
            proj_bias=vision_cfg.get("timm_proj_bias", False),
            drop=vision_cfg.get("timm_drop", 0.0), timm_kwargs=timm_kwargs,
        )
    return _build_vision_tower(
        cfg["embed_dim"], vision_cfg, quick_gelu=cfg.get("quick_gelu", False), cast_dtype=None
    )


class CLIPViT(Backbone):
    """CLIP visual tower as a Detectron2 backbone with CLIPSelf dense features.

    ``forward`` returns raw residual-stream tokens (no final norm, class token dropped) of the
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
        name, cfg = resolve_model_config(model_name)
        is_tag = isinstance(pretrained, str) and not os.path.exists(pretrained)
        if is_tag and pretrained.lower() == "openai" and "quick_gelu" not in cfg:
            cfg["quick_gelu"] = True  # OpenAI weights were trained with QuickGELU
        self.model_name = name
        self.model_cfg = cfg
        self.visual = build_visual_tower(cfg)
        self._inspect()

        if last_block_mode not in ops.LAST_BLOCK_MODES:
            raise ValueError(
                f"last_block_mode={last_block_mode!r}; choose from {ops.LAST_BLOCK_MODES}"
            )
        if freeze not in FREEZE_MODES:
            raise ValueError(f"freeze={freeze!r}; choose from {FREEZE_MODES}")
        if attn_impl not in ("sdpa", "math"):
            raise ValueError(f"attn_impl={attn_impl!r}; use 'sdpa' or 'math'")
        if autocast_dtype not in _DTYPES:
            raise ValueError(f"autocast_dtype={autocast_dtype!r}; use None, 'bf16' or 'fp16'")
        self.last_block = _LastBlock(last_block_mode, drop_residual, drop_ffn, gaussian_std)
        self.attn_impl = attn_impl
        self.autocast_dtype = _DTYPES[autocast_dtype]
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

        self.load_report = None
        if pretrained is not None and pretrained != "":
            self.load_report = self._load_pretrained(pretrained, strict_load, cache_dir)

        self.freeze = freeze
        if unlocked_groups is not None:
            if freeze not in ("none", "all"):
                raise ValueError("unlocked_groups combines only with freeze='none' or 'all'")
            self.lock(unlocked_groups)
        elif freeze == "all" or freeze == "frozen":
            self.lock(0)
        elif freeze == "clipself":
            self.lock(self.depth)
        if freeze == "frozen":
            self.eval()

    # ------------------------------------------------------------------ structure
    def _inspect(self) -> None:
        """Detect the tower family and read its geometry; reject unsupported variants."""
        v = self.visual
        if hasattr(v, "trunk") and hasattr(v.trunk, "blocks"):
            t = v.trunk
            self.family = "eva"
            blk = t.blocks[0]
            if not isinstance(blk, EvaBlock) or not isinstance(blk.attn, EvaAttention):
                raise NotImplementedError(f"unsupported timm block {type(blk).__name__}")
            if blk.attn.gate is not None or t.reg_token is not None or t.num_prefix_tokens != 1:
                raise NotImplementedError("gated attention / register tokens are not supported")
            if t.attn_pool is not None or t.global_pool not in ("token", "avg"):
                raise NotImplementedError(f"timm global_pool={t.global_pool!r} is not supported")
            if t.rope is not None:
                r = t.rope
                if (
                    not isinstance(r, RotaryEmbeddingCat) or r.in_pixels or r.rotate_half
                    or r.grid_indexing != "ij" or getattr(r, "grid_type", "index") != "index"
                ):
                    raise NotImplementedError("only EVA02-style RoPE (cat, index grid) works")
            ps = tuple(t.patch_embed.patch_size)
            self.pretrain_grid = tuple(t.patch_embed.grid_size)
            self.width = t.embed_dim
            self.num_heads = blk.attn.num_heads
        elif hasattr(v, "conv1") and hasattr(v, "transformer"):
            self.family = "openai"
            if getattr(v, "attn_pool", None) is not None:
                raise NotImplementedError("attentional pooling towers are not supported")
            attn = v.transformer.resblocks[0].attn
            if getattr(attn, "logit_scale", None) is not None:
                raise NotImplementedError("scaled cosine attention is not supported")
            ps = tuple(v.patch_size)
            self.pretrain_grid = tuple(v.grid_size)
            self.width = v.transformer.width
            self.num_heads = attn.num_heads
        else:
            raise NotImplementedError(
                f"{type(v).__name__} is not a ViT (OpenAI-style or EVA/timm) visual tower"
            )
        if ps[0] != ps[1]:
            raise NotImplementedError(f"non-square patches {ps} are not supported")
        self.patch_size = int(ps[0])
        self.depth = len(self._blocks)
        self.embed_dim = int(self.model_cfg["embed_dim"])
        self.image_size = (self.pretrain_grid[0] * self.patch_size,
                           self.pretrain_grid[1] * self.patch_size)

    @property
    def _blocks(self) -> nn.ModuleList:
        """The transformer blocks (not registered twice: a property, not an attribute)."""
        if self.family == "openai":
            return self.visual.transformer.resblocks
        return self.visual.trunk.blocks

    @property
    def size_divisibility(self) -> int:
        return self.patch_size

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return {"size_divisibility": self.patch_size}

    def _load_pretrained(self, pretrained, strict: bool, cache_dir: Optional[str]):
        source = pretrained
        if isinstance(pretrained, str) and not os.path.isfile(pretrained):
            tags = (
                open_clip.list_pretrained_tags_by_model(self.model_name)
                if isinstance(self.model_name, str) else []
            )
            if pretrained not in tags:
                raise FileNotFoundError(
                    f"pretrained={pretrained!r} is neither a checkpoint file nor an open_clip "
                    f"pretrained tag of {self.model_name!r} (tags: {tags})"
                )
            source = download_pretrained(
                get_pretrained_cfg(self.model_name, pretrained), cache_dir=cache_dir
            )
        return load_visual_weights(self.visual, source, strict=strict)

    # ------------------------------------------------------------------ freezing
    def lock_groups(self) -> List[List[nn.Parameter]]:
        """Parameter groups for ``unlocked_groups`` (docs/distillation.md §1), first to last.

        OpenAI-style: ``[conv1, class_embedding, ln_pre]``, ``[positional_embedding]``, then each
        block. EVA: ``[patch_embed, cls_token, norm_pre]``, ``[pos_embed]``, then each block.
        ``ln_post``/``proj`` (EVA: ``norm``, ``fc_norm``, ``head``) are in no group: never unlocked.
        """
        v = self.visual
        if self.family == "openai":
            stem = list(v.conv1.parameters()) + [v.class_embedding] + list(v.ln_pre.parameters())
            pos = [v.positional_embedding]
        else:
            t = v.trunk
            stem = list(t.patch_embed.parameters()) + list(t.norm_pre.parameters())
            stem += [t.cls_token] if t.cls_token is not None else []
            pos = [t.pos_embed] if t.pos_embed is not None else []
        return [stem, pos] + [list(b.parameters()) for b in self._blocks]

    def lock(self, unlocked_groups: int = 0) -> None:
        """Freeze the tower, then unfreeze the last ``unlocked_groups`` lock groups.

        Args:
            unlocked_groups (int): 0 = everything frozen; ``depth`` = every block trainable
                (the CLIPSelf setting, N=12 for B/16, 24 for L/14); ``depth + 2`` = all but the
                final norm and head.
        """
        groups = self.lock_groups()
        if not 0 <= unlocked_groups <= len(groups):
            raise ValueError(f"unlocked_groups={unlocked_groups} outside 0..{len(groups)}")
        for p in self.visual.parameters():
            p.requires_grad_(False)
        for group in groups[len(groups) - unlocked_groups:]:
            for p in group:
                p.requires_grad_(True)

    def train(self, mode: bool = True):
        """As ``nn.Module.train``; a ``freeze="frozen"`` backbone always stays in eval mode."""
        return super().train(False if getattr(self, "freeze", None) == "frozen" else mode)

    # ------------------------------------------------------------------ embeddings
    def _pos_param(self) -> Tuple[Optional[torch.Tensor], int]:
        if self.family == "openai":
            return self.visual.positional_embedding, 1
        t = self.visual.trunk
        return t.pos_embed, (0 if t.no_embed_class else 1)

    def pos_embed_for(self, grid: Sequence[int]) -> Optional[torch.Tensor]:
        """Absolute positional embedding resized to ``grid`` (cached per grid while it cannot
        receive gradients). OpenAI: (1 + h*w, C); EVA: (1, 1 + h*w, C)."""
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
        """EVA02 RoPE table (h*w, 2*head_dim) ``[sin | cos]`` for ``grid`` (cached); None without
        RoPE."""
        rope = getattr(getattr(self.visual, "trunk", None), "rope", None)
        if rope is None:
            return None
        key = (int(grid[0]), int(grid[1]), device)
        if key not in self._rope_cache:
            self._rope_cache[key] = ops.build_rope_table(
                key[:2], rope.dim, ref_grid=rope.ref_feat_shape,
                temperature=float(rope.temperature), grid_offset=float(rope.grid_offset),
                device=device,
            )
            while len(self._rope_cache) > 8:
                self._rope_cache.popitem(last=False)
        return self._rope_cache[key]

    def _embed(self, x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N, C) tokens [cls, patches] with positions, before block 0."""
        B = x.shape[0]
        if self.family == "openai":
            v = self.visual
            t = v.conv1(x).flatten(2).transpose(1, 2)  # (B, h*w, C)
            cls = v.class_embedding.reshape(1, 1, -1).expand(B, -1, -1).to(t.dtype)
            t = torch.cat([cls, t], dim=1) + self.pos_embed_for(grid).to(t.dtype)
            return v.ln_pre(t)
        tr = self.visual.trunk
        t = tr.patch_embed.proj(x).flatten(2).transpose(1, 2)  # (B, h*w, C)
        t = tr.patch_embed.norm(t)
        cls = tr.cls_token.expand(B, -1, -1).to(t.dtype)
        pos = self.pos_embed_for(grid)
        if tr.no_embed_class:
            t = t + pos.to(t.dtype) if pos is not None else t
            t = torch.cat([cls, t], dim=1)
        else:
            t = torch.cat([cls, t], dim=1)
            t = t + pos.to(t.dtype) if pos is not None else t
        return tr.norm_pre(tr.pos_drop(t))

    # ------------------------------------------------------------------ blocks
    def _qkv(self, blk: nn.Module, y: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, N, C) normed tokens -> q, k, v each (B, H, N, d), q/k norms applied."""
        B, N, _ = y.shape
        attn = blk.attn
        H = attn.num_heads
        if self.family == "openai":
            qkv = F.linear(y, attn.in_proj_weight, attn.in_proj_bias)
            q, k, v = qkv.reshape(B, N, 3, H, -1).permute(2, 0, 3, 1, 4).unbind(0)
            if hasattr(attn, "ln_q"):  # open_clip CustomResidualAttentionBlock
                q, k = attn.ln_q(q), attn.ln_k(k)
            return q, k, v
        if attn.qkv is not None:
            bias = None
            if attn.q_bias is not None:
                bias = torch.cat((attn.q_bias, attn.k_bias, attn.v_bias))
            qkv = F.linear(y, attn.qkv.weight, bias)
            q, k, v = qkv.reshape(B, N, 3, H, -1).permute(2, 0, 3, 1, 4).unbind(0)
        else:
            q = attn.q_proj(y).reshape(B, N, H, -1).transpose(1, 2)
            k = attn.k_proj(y).reshape(B, N, H, -1).transpose(1, 2)
            v = attn.v_proj(y).reshape(B, N, H, -1).transpose(1, 2)
        return attn.q_norm(q), attn.k_norm(k), v

    def _value(self, blk: nn.Module, y: torch.Tensor) -> torch.Tensor:
        """Value projection only (the "v" mode): (B, N, C) -> (B, H, N, d)."""
        B, N, _ = y.shape
        attn = blk.attn
        if self.family == "openai":
            w, b = attn.in_proj_weight, attn.in_proj_bias
            n = w.shape[0] // 3
            v = F.linear(y, w[2 * n:], None if b is None else b[2 * n:])
        elif attn.qkv is not None:
            n = attn.qkv.weight.shape[0] // 3
            v = F.linear(y, attn.qkv.weight[2 * n:], attn.v_bias)
        else:
            v = attn.v_proj(y)
        return v.reshape(B, N, attn.num_heads, -1).transpose(1, 2)

    def _attn_branch(self, blk: nn.Module, o: torch.Tensor) -> torch.Tensor:
        """Per-head output (B, H, N, d) -> residual update (B, N, C): merge heads, inner norm,
        output projection, layer scale (and drop path for EVA)."""
        attn = blk.attn
        if self.family == "openai":
            if getattr(attn, "head_scale", None) is not None:
                o = o * attn.head_scale
            B, H, N, d = o.shape
            o = o.transpose(1, 2).reshape(B, N, H * d)
            if hasattr(attn, "ln_inner"):  # custom block
                a = attn.out_drop(attn.out_proj(attn.ln_inner(o)))
                return blk.ls_1(blk.ln_attn(a))
            return blk.ls_1(attn.out_proj(o))
        B, H, N, d = o.shape
        o = o.transpose(1, 2).reshape(B, N, H * d)
        a = attn.proj_drop(attn.proj(attn.norm(o)))
        if blk.gamma_1 is not None:
            a = blk.gamma_1 * a
        return blk.drop_path1(a)

    def _mlp_branch(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.family == "openai":
            return blk.ls_2(blk.mlp(blk.ln_2(x)))
        m = blk.mlp(blk.norm2(x))
        if blk.gamma_2 is not None:
            m = blk.gamma_2 * m
        return blk.drop_path2(m)

    def _block(
        self,
        blk: nn.Module,
        x: torch.Tensor,
        rope: Optional[torch.Tensor],
        last: Optional[_LastBlock],
        bias: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """One pre-norm block; ``last`` (not None) selects the modified last-block variant."""
        mode = "vanilla" if last is None else last.mode
        y = blk.ln_1(x) if self.family == "openai" else blk.norm1(x)
        if mode == "v":
            o = self._value(blk, y)
        else:
            q, k, v = self._qkv(blk, y)
            if rope is not None:
                npt = blk.attn.num_prefix_tokens
                q = torch.cat([q[:, :, :npt], ops.apply_rope(q[:, :, npt:], rope)], dim=2)
                k = torch.cat([k[:, :, :npt], ops.apply_rope(k[:, :, npt:], rope)], dim=2)
            o = ops.mode_attention(q, k, v, mode, bias=bias, impl=self.attn_impl)
        a = self._attn_branch(blk, o)
        x = a if (last is not None and last.drop_residual) else x + a
        if last is None or not last.drop_ffn:
            x = x + self._mlp_branch(blk, x)
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
        rope = self.rope_for(grid, t.device) if self.family == "eva" else None
        last = self.last_block if modify_last else None
        bias = None
        if last is not None and last.gaussian_std and last.mode != "v":
            bias = ops.gaussian_neighbour_bias(grid, last.gaussian_std, 1, device=t.device)
        ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        taps = set(taps)
        out = {}
        for i in range(stop + 1):
            blk = self._blocks[i]
            is_last = i == self.depth - 1
            args = (blk, t, rope, last if is_last else None, bias if is_last else None)
            if ckpt:
                t = torch.utils.checkpoint.checkpoint(self._block, *args, use_reentrant=False)
            else:
                t = self._block(*args)
            if i in taps:
                out[i] = t
        return t, out, grid

    # ------------------------------------------------------------------ heads
    def tokens_to_clip(self, t: torch.Tensor) -> torch.Tensor:
        """Final norm + head per token (docs/dense_features.md §2, step 4): (B, M, C) -> (B, M, D),
        unnormalised."""
        if self.family == "openai":
            v = self.visual
            t = v.ln_post(t)
            return t @ v.proj if v.proj is not None else t
        tr = self.visual.trunk
        t = tr.head(tr.head_drop(tr.fc_norm(tr.norm(t))))
        return self.visual.head(t)

    def _pool_image(self, t: torch.Tensor) -> torch.Tensor:
        """(B, N, C) final tokens -> (B, D) image embedding exactly as open_clip pools."""
        if self.family == "openai":
            v = self.visual
            pooled, _ = v._pool(t)
            return pooled @ v.proj if v.proj is not None else pooled
        tr = self.visual.trunk
        return self.visual.head(tr.forward_head(tr.norm(t)))

    def _dense_from_tokens(self, t: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """(B, N, C) -> (B, D, h, w), L2-normalised per location, float32."""
        B = t.shape[0]
        d = F.normalize(self.tokens_to_clip(t[:, 1:]).float(), dim=-1)  # (B, h*w, D)
        return d.transpose(1, 2).reshape(B, -1, grid[0], grid[1])

    def _context(self, x: torch.Tensor):
        stack = contextlib.ExitStack()
        if self.freeze == "frozen":
            stack.enter_context(torch.no_grad())
        if self.autocast_dtype is not None:
            stack.enter_context(
                torch.autocast(device_type=x.device.type, dtype=self.autocast_dtype)
            )
        return stack

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
        """Image embeddings like open_clip's ``encode_image`` (vanilla blocks, class token + head).

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
            dict[str, Tensor]: ``block{i}`` -> (B, C, H/p, W/p) raw residual tokens (class token
            dropped, no final norm); ``clip_dense`` -> (B, D, H/p, W/p) when ``dense``.
        """
        dense = self.out_dense if dense is None else bool(dense)
        with self._context(x):
            stop = self.depth - 1 if dense else max(self.out_indices)
            t, taps, grid = self.run_tokens(x, stop=stop, taps=self.out_indices)
            B = x.shape[0]
            out = {}
            for i in self.out_indices:
                m = taps[i][:, 1:].transpose(1, 2).reshape(B, self.width, grid[0], grid[1])
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
