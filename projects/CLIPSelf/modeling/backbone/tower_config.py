"""open_clip model configs and visual-tower construction shared by every CLIP tower wrapper
(:class:`~clipself.modeling.backbone.clip_vit.CLIPViT`,
:class:`~clipself.modeling.backbone.clip_tower.CLIPConvTower`; docs/dense_features.md §1, §9).

- :func:`resolve_model_config`: a name (built-in, registered, ``ToyCLIP-*``), a JSON file or a dict
  -> the open_clip config; an unknown name lists the closest open_clip names.
- :func:`build_visual_tower`: the open_clip ``model.visual`` for a config (random init), with this
  project's ``timm_model_kwargs`` extension for shrunk timm trunks.
- :func:`resolve_pretrained`: ``pretrained=`` (tag, file, state dict) -> something loadable.
"""
import copy
import difflib
import json
import os
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import open_clip
import timm
import torch
from omegaconf import DictConfig, OmegaConf
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import _build_vision_tower
from open_clip.pretrained import download_pretrained, get_pretrained_cfg
from torch import nn

__all__ = [
    "CLIP_PIXEL_MEAN", "CLIP_PIXEL_STD", "FREEZE_MODES", "PROJECT_MODEL_CONFIGS",
    "register_project_model_configs", "resolve_model_config", "closest_model_names",
    "build_visual_tower", "resolve_pretrained", "parse_autocast_dtype",
]

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

#: open_clip model configs shipped with the project (e.g. the synthetic world's toy CLIP)
PROJECT_MODEL_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_configs")


def parse_autocast_dtype(name: Optional[str]) -> Optional[torch.dtype]:
    """``autocast_dtype=`` option -> torch dtype (None = float32, no autocast).

    Args:
        name (str or None): None/"fp32", "bf16"/"bfloat16" or "fp16"/"float16".
    Returns:
        torch.dtype or None.
    """
    if name not in _DTYPES:
        raise ValueError(f"autocast_dtype={name!r}; use None, 'bf16' or 'fp16'")
    return _DTYPES[name]


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


def closest_model_names(name: str, n: int = 5) -> List[str]:
    """The open_clip model names closest to ``name`` (``difflib``, case-insensitive).

    Args:
        name (str): a misspelled model name, e.g. "ViT-B16-SigLIP2".
        n (int): at most this many names.
    Returns:
        list[str]: known names, closest first (may be empty).
    """
    known = open_clip.list_models()
    lower = {k.lower(): k for k in known}
    hits = difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.5)
    return [lower[h] for h in hits]


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
            close = closest_model_names(model_name)
            hint = f"; closest open_clip names: {', '.join(close)}" if close else ""
            raise ValueError(
                f"unknown open_clip model config {model_name!r}{hint}. Use a built-in name "
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
        nn.Module: open_clip ``VisionTransformer`` / ``ModifiedResNet`` / ``TimmModel`` (or the
        equivalent :class:`_TimmTower`), whose ``state_dict`` matches ``model.visual`` of open_clip.
    """
    vision_cfg = dict(cfg["vision_cfg"])
    timm_kwargs = vision_cfg.pop("timm_model_kwargs", None)
    if timm_kwargs:
        if not vision_cfg.get("timm_model_name"):
            raise ValueError("timm_model_kwargs needs timm_model_name in vision_cfg")
        tower = _TimmTower(
            vision_cfg["timm_model_name"], cfg["embed_dim"],
            pool=vision_cfg.get("timm_pool", "avg"),
            proj=vision_cfg.get("timm_proj", "linear"),
            proj_bias=vision_cfg.get("timm_proj_bias", False),
            drop=vision_cfg.get("timm_drop", 0.0), timm_kwargs=timm_kwargs,
        )
        size = vision_cfg.get("image_size", 224)
        tower.image_size = (size, size) if isinstance(size, int) else tuple(size)  # as TimmModel
        return tower
    return _build_vision_tower(
        cfg["embed_dim"], vision_cfg, quick_gelu=cfg.get("quick_gelu", False), cast_dtype=None
    )


def is_pretrained_tag(pretrained: Any) -> bool:
    """True when ``pretrained`` names an open_clip tag rather than a file or a state dict."""
    return isinstance(pretrained, str) and pretrained != "" and not os.path.exists(pretrained)


def resolve_pretrained(
    pretrained: Union[str, Mapping], model_name: Any, cache_dir: Optional[str] = None
) -> Union[str, Mapping]:
    """A checkpoint file or state dict for ``pretrained=`` (an open_clip tag is downloaded by
    open_clip into ``cache_dir``).

    Args:
        pretrained (str or dict): a file, a state dict, or an open_clip pretrained tag.
        model_name: the model name the tag belongs to (a str; configs given as dicts have none).
        cache_dir (str): download directory for tags.
    Returns:
        str or dict: a file path or the state dict.
    """
    if not is_pretrained_tag(pretrained):
        return pretrained
    tags = open_clip.list_pretrained_tags_by_model(model_name) if isinstance(model_name, str) \
        else []
    if pretrained not in tags:
        raise FileNotFoundError(
            f"pretrained={pretrained!r} is neither a checkpoint file nor an open_clip "
            f"pretrained tag of {model_name!r} (tags: {tags})"
        )
    return download_pretrained(get_pretrained_cfg(model_name, pretrained), cache_dir=cache_dir)
