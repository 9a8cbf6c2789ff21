"""LazyConfig helpers for train_net.py: validated overrides and device resolution."""
import difflib
import inspect
from typing import List

import torch
from detectron2.config import LazyConfig
from detectron2.utils.registry import locate
from omegaconf import DictConfig, ListConfig, OmegaConf

__all__ = ["apply_overrides", "check_override_keys", "resolve_device", "all_keys"]

_MISSING = object()


def all_keys(cfg, prefix: str = "") -> List[str]:
    """Every dotted key of a config tree (dicts and lists), e.g. ``["train.max_iter", ...]``."""
    keys = []
    items = cfg.items() if isinstance(cfg, (dict, DictConfig)) else enumerate(cfg)
    for k, v in items:
        key = f"{prefix}{k}"
        keys.append(key)
        if isinstance(v, (dict, DictConfig, list, ListConfig)):
            keys.extend(all_keys(v, key + "."))
    return keys


def _target_accepts(node, name: str) -> bool:
    """Whether ``node`` is a LazyCall whose target takes a keyword argument ``name``."""
    if not isinstance(node, (dict, DictConfig)) or "_target_" not in node:
        return False
    target = node["_target_"]
    if isinstance(target, str):
        try:
            target = locate(target)
        except Exception:  # an unresolvable target cannot vouch for the key
            return False
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    if name in params:
        return params[name].kind != inspect.Parameter.POSITIONAL_ONLY
    return False


def check_override_keys(cfg, keys: List[str]) -> None:
    """Reject override keys that do not exist in ``cfg``.

    A key is accepted if it exists, or if its parent is a ``LazyCall`` whose target takes that
    keyword argument (e.g. ``model.roi_heads.batch_size_per_image`` when the config relies on the
    default). Anything else is most likely a typo (``train.max_iters``) and raises ``KeyError``
    with the closest existing keys. Use ``+key=value`` to add a new key on purpose.
    """
    for key in keys:
        if OmegaConf.select(cfg, key, default=_MISSING) is not _MISSING:
            continue
        parent_key, _, name = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
        if parent is not None and _target_accepts(parent, name):
            continue
        close = difflib.get_close_matches(key, all_keys(cfg), n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise KeyError(
            f"Override key '{key}' does not exist in the config.{hint} "
            f"(Prefix it with '+' to add a new key on purpose: +{key}=...)"
        )


def apply_overrides(cfg, overrides: List[str]):
    """``LazyConfig.apply_overrides`` with key validation (hydra grammar).

    Args:
        cfg: a LazyConfig (omegaconf) object, modified in place.
        overrides (list[str]): ``key=value`` tokens; ``+key=value`` adds a key that does not exist.
    Returns:
        the same cfg.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    check_override_keys(cfg, [o.key_or_group for o in parsed if not o.is_add()])
    plain = [o.lstrip("+") for o in overrides]
    return LazyConfig.apply_overrides(cfg, plain)


def resolve_device(device: str) -> str:
    """Map ``"auto"`` to ``"cuda"`` if a GPU is visible, else ``"cpu"``; check explicit choices."""
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"train.device={device!r} but no CUDA device is visible; use train.device=cpu or auto"
        )
    return str(device)
