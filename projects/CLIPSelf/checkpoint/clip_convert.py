"""Load and convert CLIP visual-tower checkpoints (docs/checkpoints.md §2).

Layouts understood (after unwrapping ``{"state_dict"|"model"|"module": ...}`` and a ``module.``
prefix, and after selecting the visual keys under ``visual.`` or ``backbone.visual.``):

- ``eva_clip``: the authors' EVA-CLIP / CLIPSelf layout: separate ``attn.{q,k,v}_proj.weight``,
  ``attn.q_bias``/``attn.v_bias``, ``attn.inner_attn_ln``, ``mlp.{w1,w2,w3,ffn_ln}``,
  ``rope.freqs_*`` buffers. Converted to timm's ``Eva`` with
  ``timm.models.eva.checkpoint_filter_fn`` (positional embedding resampled without antialiasing
  when the grid differs).
- ``timm_eva``: a bare timm ``Eva`` state dict (``blocks.0.mlp.fc1_g.weight``, ...).
- ``open_clip_timm``: open_clip's ``TimmModel`` layout (``trunk.*``, ``head.*``).
- ``open_clip_vit``: open_clip's OpenAI-style ``VisionTransformer`` (``conv1``, ``transformer.*``).

Text-tower keys and ``logit_scale`` are ignored here (see ``text_classifier`` for the text tower).
Everything returns or raises with a :class:`LoadReport` that names missing and unexpected keys.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from timm.layers import build_rotary_pos_embed, resample_abs_pos_embed
from timm.layers.pos_embed_sincos import freq_bands
from timm.models.eva import checkpoint_filter_fn

from .io import read_checkpoint, save_checkpoint_file

__all__ = [
    "LoadReport",
    "unwrap_state_dict",
    "split_visual_state_dict",
    "detect_visual_layout",
    "eva_clip_to_timm",
    "timm_to_eva_clip",
    "has_eva_clip_layout",
    "visual_to_clipself_state_dict",
    "load_visual_weights",
    "load_reported",
    "export_clipself_checkpoint",
    "non_visual_state",
]

logger = logging.getLogger(__name__)

_VISUAL_PREFIXES = ("backbone.visual.", "visual.")
# top-level names of the non-visual part of a CLIP state dict (custom-text and flat layouts)
_TEXT_ROOTS = {
    "text", "logit_scale", "logit_bias", "token_embedding", "positional_embedding", "transformer",
    "ln_final", "text_projection",
}


@dataclass
class LoadReport:
    """What happened when a checkpoint was loaded into a visual tower.

    Attributes:
        source (str): file path or a description of the state dict.
        layout (str): detected layout (see the module docstring).
        missing_keys (list[str]): model keys the checkpoint did not provide.
        unexpected_keys (list[str]): checkpoint keys the model does not have.
        resized (list[str]): keys whose positional embedding was resampled to the model's grid.
        ignored (list[str]): non-visual keys that were skipped (text tower, logit_scale, ...).
    """

    source: str = ""
    layout: str = ""
    missing_keys: List[str] = field(default_factory=list)
    unexpected_keys: List[str] = field(default_factory=list)
    resized: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every model key was loaded and no checkpoint key was left over."""
        return not self.missing_keys and not self.unexpected_keys

    def __str__(self) -> str:
        def _few(keys):
            shown = ", ".join(keys[:10])
            return shown + (f", ... ({len(keys)} in all)" if len(keys) > 10 else "")

        lines = [f"checkpoint {self.source} (layout: {self.layout})"]
        lines.append(f"  missing keys ({len(self.missing_keys)}): {_few(self.missing_keys)}")
        lines.append(
            f"  unexpected keys ({len(self.unexpected_keys)}): {_few(self.unexpected_keys)}"
        )
        if self.resized:
            lines.append(f"  resampled to the model grid: {_few(self.resized)}")
        if self.ignored:
            lines.append(f"  ignored non-visual keys: {len(self.ignored)}")
        return "\n".join(lines)


def unwrap_state_dict(obj: Any) -> Dict[str, torch.Tensor]:
    """The flat state dict inside a training checkpoint.

    Descends into ``state_dict``/``model``/``module`` entries (docs/checkpoints.md §2: the authors'
    loaders accept any of them) and strips a ``module.`` (DDP) prefix.

    Args:
        obj: a state dict or a checkpoint dict.
    Returns:
        dict[str, Tensor].
    """
    if hasattr(obj, "state_dict") and not isinstance(obj, Mapping):
        obj = obj.state_dict()
    for _ in range(3):
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in ("state_dict", "model", "module") if k in obj), None)
        if isinstance(inner, Mapping):
            obj = inner
        else:
            break
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a state dict, got {type(obj).__name__}")
    sd = {k: v for k, v in obj.items() if torch.is_tensor(v)}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def split_visual_state_dict(
    sd: Mapping[str, torch.Tensor],
) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Select the visual tower's keys and strip their prefix.

    Args:
        sd (dict): a flat state dict (full CLIP, F-ViT detector, or visual tower only).
    Returns:
        tuple: (visual state dict without prefix, list of ignored keys).
    """
    for prefix in _VISUAL_PREFIXES:
        if any(k.startswith(prefix) for k in sd):
            vsd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            ignored = [k for k in sd if not k.startswith(prefix)]
            return vsd, ignored
    return dict(sd), []


def detect_visual_layout(vsd: Mapping[str, torch.Tensor]) -> str:
    """Name the layout of a visual state dict (keys without the ``visual.`` prefix).

    Returns:
        str: "eva_clip", "timm_eva", "open_clip_timm", "open_clip_vit" or "unknown".
    """
    keys = list(vsd)
    if any(k.startswith("trunk.") for k in keys):
        return "open_clip_timm"
    if "conv1.weight" in vsd or any(k.startswith("transformer.resblocks.") for k in keys):
        return "open_clip_vit"
    markers = (".attn.q_bias", ".attn.v_bias", ".mlp.w1.", ".mlp.w3.", "inner_attn_ln", "ffn_ln")
    if any(m in k for k in keys for m in markers) or "rope.freqs_cos" in vsd:
        return "eva_clip"
    if any(k.startswith("blocks.") for k in keys) and ("pos_embed" in vsd or "cls_token" in vsd):
        return "timm_eva"
    return "unknown"


def eva_clip_to_timm(vsd: Mapping[str, torch.Tensor], trunk: torch.nn.Module) -> Dict[str, Any]:
    """Convert the authors' EVA-CLIP visual keys to timm ``Eva`` keys (docs/checkpoints.md §2).

    Uses ``timm.models.eva.checkpoint_filter_fn`` (drops RoPE buffers; ``q_bias``/``v_bias`` ->
    ``q_proj.bias``/``v_proj.bias``; ``w1/w2/w3/ffn_ln`` -> ``fc1_g/fc1_x/fc2/norm``;
    ``inner_attn_ln`` -> ``attn.norm``) with ``antialias=False`` for positional resampling.

    Args:
        vsd (dict): visual keys without the ``visual.`` prefix.
        trunk (timm Eva): the target model (read for its grid and patch size).
    Returns:
        dict: timm-layout state dict for ``trunk``.
    """
    return checkpoint_filter_fn(dict(vsd), trunk, interpolation="bicubic", antialias=False)


_TIMM_TO_EVA_CLIP = (
    ("mlp.fc1_g.", "mlp.w1."),
    ("mlp.fc1_x.", "mlp.w2."),
    ("mlp.fc2.", "mlp.w3."),
    ("mlp.norm.", "mlp.ffn_ln."),
    ("attn.norm.", "attn.inner_attn_ln."),
    ("attn.q_proj.bias", "attn.q_bias"),
    ("attn.v_proj.bias", "attn.v_bias"),
)


def timm_to_eva_clip(
    trunk_sd: Mapping[str, torch.Tensor], rope_table: Optional[torch.Tensor], depth: int
) -> Dict[str, torch.Tensor]:
    """Inverse of :func:`eva_clip_to_timm`: timm ``Eva`` keys -> the authors' layout (no prefix).

    Args:
        trunk_sd (dict): timm ``Eva`` state dict (separate q/k/v, SwiGLU with norm).
        rope_table (Tensor or None): (N0, 2*head_dim) ``[sin | cos]`` at the pretraining grid;
            written as the persistent ``rope.freqs_{sin,cos}`` buffers (also per block, as the
            authors' shared module appears under every block).
        depth (int): number of blocks.
    Returns:
        dict: authors' EVA-CLIP visual keys (without ``visual.``).
    """
    if any(".attn.qkv." in k for k in trunk_sd):
        raise ValueError("the authors' EVA-CLIP layout has separate q/k/v; this model fuses qkv")
    out = {}
    for k, v in trunk_sd.items():
        for a, b in _TIMM_TO_EVA_CLIP:
            k = k.replace(a, b)
        out[k] = v
    if rope_table is not None:
        sin, cos = rope_table.chunk(2, dim=-1)
        out["rope.freqs_cos"] = cos.contiguous()
        out["rope.freqs_sin"] = sin.contiguous()
        for i in range(depth):
            out[f"blocks.{i}.attn.rope.freqs_cos"] = cos.contiguous()
            out[f"blocks.{i}.attn.rope.freqs_sin"] = sin.contiguous()
    return out


def _is_eva(visual: torch.nn.Module) -> bool:
    return hasattr(visual, "trunk") and hasattr(visual.trunk, "blocks")


def _native_rope_table(trunk) -> Optional[torch.Tensor]:
    """(N0, 2*head_dim) ``[sin | cos]`` RoPE table of a timm Eva trunk at its pretraining grid
    (timm's ``build_rotary_pos_embed`` with the trunk's own settings)."""
    rope = getattr(trunk, "rope", None)
    if rope is None:
        return None
    sin, cos = build_rotary_pos_embed(
        list(trunk.patch_embed.grid_size),
        bands=freq_bands(rope.dim // 4, float(rope.temperature), step=1), in_pixels=False,
        ref_feat_shape=rope.ref_feat_shape, grid_offset=float(rope.grid_offset),
    )
    return torch.cat([sin, cos], dim=-1)


def has_eva_clip_layout(visual: torch.nn.Module) -> bool:
    """Whether the authors' EVA-CLIP layout (docs/checkpoints.md §2) can hold this tower: a timm
    ``Eva`` trunk with separate q/k/v, a class-token head (no attention pool) and no extra
    open_clip projection. EVA02-B/L towers qualify; PE-Core (attention pool, fused qkv), SigLIP
    (timm ``VisionTransformer``) and CNN towers do not."""
    if not _is_eva(visual) or type(visual.trunk).__name__ != "Eva":
        return False
    trunk = visual.trunk
    head = getattr(visual, "head", None)
    if head is not None and len(list(head.parameters())) > 0:
        return False
    if getattr(trunk, "attn_pool", None) is not None:
        return False
    return not any(".attn.qkv." in k for k in trunk.state_dict())


def visual_to_clipself_state_dict(visual: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """State dict of an open_clip visual tower in the authors' CLIPSelf layout (``visual.*``).

    EVA towers of the authors' kind (:func:`has_eva_clip_layout`) are written in the EVA-CLIP
    layout of docs/checkpoints.md §2 (with RoPE buffers); every other tower (OpenAI-style ViTs,
    SigLIP / PE-Core / other timm trunks, CNNs) keeps open_clip's own names (``visual.trunk.*``,
    ``visual.head.*``, ``visual.attnpool.*``, ...), which ``open_clip.create_model`` and
    ``CLIPTower(pretrained=...)`` load directly.

    Args:
        visual (nn.Module): ``CLIPViT.visual`` or an open_clip ``model.visual``.
    Returns:
        dict[str, Tensor]: keys prefixed with ``visual.``.
    """
    if has_eva_clip_layout(visual):
        trunk = visual.trunk
        sd = timm_to_eva_clip(trunk.state_dict(), _native_rope_table(trunk), len(trunk.blocks))
    else:
        sd = dict(visual.state_dict())
    return {"visual." + k: v.detach().clone() for k, v in sd.items()}


def _resize_pos_if_needed(visual, sd: Dict[str, torch.Tensor], report: LoadReport) -> None:
    """Resample a positional embedding stored for another grid (bicubic, no antialias)."""
    if _is_eva(visual):
        key, param = "trunk.pos_embed", visual.trunk.pos_embed
        dst = visual.trunk.patch_embed.grid_size
        prefix = 0 if getattr(visual.trunk, "no_embed_class", False) else 1
    else:
        key, param = "positional_embedding", getattr(visual, "positional_embedding", None)
        dst = getattr(visual, "grid_size", None)
        prefix = 1
    if param is None or key not in sd or sd[key].shape == param.shape:
        return
    n_src = sd[key].shape[-2] - prefix
    side = int(round(n_src ** 0.5))
    if side * side != n_src:
        raise ValueError(f"{key}: cannot infer the grid of {n_src} stored positions")
    stored = sd[key] if sd[key].dim() == 3 else sd[key][None]  # timm wants (1, N, C)
    sd[key] = resample_abs_pos_embed(
        stored, new_size=list(dst), old_size=[side, side], num_prefix_tokens=prefix,
        antialias=False,
    ).reshape(param.shape)
    report.resized.append(key)


def load_visual_weights(
    visual: torch.nn.Module,
    source: Union[str, Mapping[str, Any]],
    strict: bool = True,
) -> LoadReport:
    """Load a checkpoint into an open_clip visual tower, converting the layout when needed.

    Args:
        visual (nn.Module): open_clip ``VisionTransformer`` or ``TimmModel``-like
            (``trunk``/``head``).
        source (str or dict): checkpoint path, or an already loaded (checkpoint) dict.
        strict (bool): raise ``RuntimeError`` (with the report) on missing or unexpected keys.
    Returns:
        LoadReport: what was loaded (also logged).
    """
    name = source if isinstance(source, str) else "<state dict>"
    obj = read_checkpoint(source) if isinstance(source, str) else source
    vsd, ignored = split_visual_state_dict(unwrap_state_dict(obj))
    layout = detect_visual_layout(vsd)
    report = LoadReport(source=str(name), layout=layout, ignored=ignored)
    eva = _is_eva(visual)
    if eva and layout in ("eva_clip", "timm_eva"):
        n_pos = vsd["pos_embed"].shape[1] if "pos_embed" in vsd else None
        converted = eva_clip_to_timm(vsd, visual.trunk)
        sd = {"trunk." + k: v for k, v in converted.items()}
        if n_pos is not None and visual.trunk.pos_embed is not None:
            if n_pos != visual.trunk.pos_embed.shape[1]:
                report.resized.append("trunk.pos_embed")
    elif eva and layout == "open_clip_timm":
        sd = dict(vsd)
    elif not eva and layout == "open_clip_vit":
        sd = dict(vsd)
    else:
        kind = "an EVA (timm) tower" if eva else "an OpenAI-style open_clip ViT"
        raise ValueError(
            f"{name}: checkpoint layout '{layout}' cannot be loaded into {kind}; check that "
            "model_name matches the checkpoint (e.g. EVA02-B-16 for the authors' CLIPSelf B/16)"
        )
    _resize_pos_if_needed(visual, sd, report)
    return load_reported(visual, sd, report, strict)


def load_reported(visual: torch.nn.Module, sd: Mapping[str, torch.Tensor], report: LoadReport,
                  strict: bool) -> LoadReport:
    """``visual.load_state_dict(sd, strict=False)``, missing / unexpected keys recorded in
    ``report``; an incomplete load is logged, and raises when ``strict``."""
    try:
        result = visual.load_state_dict(sd, strict=False)
    except RuntimeError as err:
        raise RuntimeError(
            f"{report.source}: shape mismatch loading the visual tower: {err}") from err
    report.missing_keys = list(result.missing_keys)
    report.unexpected_keys = list(result.unexpected_keys)
    if report.ok:
        logger.info("loaded %s", report)
    else:
        logger.warning("incomplete load:\n%s", report)
        if strict:
            raise RuntimeError(
                f"{report}\nThe checkpoint does not match the model; pass strict_load=False to "
                "load it anyway."
            )
    return report


def export_clipself_checkpoint(
    visual: torch.nn.Module,
    path: Optional[str] = None,
    extra_state: Optional[Mapping[str, torch.Tensor]] = None,
    name: str = "",
    epoch: int = 0,
) -> Dict[str, Any]:
    """A checkpoint in the authors' CLIPSelf format ``{"epoch", "name", "state_dict"}``
    (docs/checkpoints.md §2).

    Args:
        visual (nn.Module): the visual tower (``CLIPViT.visual``).
        path (str): where to ``torch.save`` it (optional).
        extra_state (dict): more keys to include verbatim (e.g. ``text.*``, ``logit_scale``).
        name (str), epoch (int): metadata fields.
    Returns:
        dict: the checkpoint.
    """
    sd = visual_to_clipself_state_dict(visual)
    if extra_state:
        sd.update({k: v for k, v in extra_state.items() if not k.startswith("visual.")})
    ckpt = {"epoch": int(epoch), "name": name, "state_dict": sd}
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        save_checkpoint_file(ckpt, path)
    return ckpt


def non_visual_state(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Text tower, logit scale and other non-visual keys of a full CLIP state dict (empty for a
    bare visual state dict)."""
    if not any(k.startswith(_VISUAL_PREFIXES) for k in sd):
        return {}  # a bare visual state dict: nothing else to carry over
    return {k: v for k, v in sd.items() if k.split(".")[0] in _TEXT_ROOTS}
