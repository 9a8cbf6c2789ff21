"""LazyConfig helpers for train_net.py: validated overrides and device resolution."""
import difflib
import inspect
from typing import List

import torch
from detectron2.config import LazyConfig
from detectron2.utils.registry import locate
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

__all__ = [
    "apply_overrides",
    "check_override_keys",
    "check_override_types",
    "resolve_device",
    "all_keys",
]

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


def _type_name(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (list, tuple, ListConfig)):
        return "list"
    if isinstance(value, (dict, DictConfig)):
        return "dict"
    return type(value).__name__


def _compatible(current, new) -> bool:
    """Whether an override value ``new`` may replace the config's ``current`` value."""
    kind, new_kind = _type_name(current), _type_name(new)
    if kind == "null" or kind == new_kind:
        return True
    if current == "auto" and new_kind in ("bool", "int", "float"):
        return True  # "auto" stands for a value chosen at run time (train.amp.enabled=auto)
    if kind == "float" and new_kind == "int":
        return True  # lr=1 for a float key
    if new_kind == "null":
        return kind in ("str", "list", "dict")  # e.g. an optional path or node set to None
    return False


def _current_value(cfg, key: str):
    """(found, value) of ``key``: the config's value, or the default of the LazyCall target's
    keyword argument the key names; ``found`` is False for interpolations and unknown defaults."""
    parent_key, _, name = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
    if isinstance(parent, DictConfig) and name in parent:
        if OmegaConf.is_interpolation(parent, name):
            return False, None  # "${..x}": its type is whatever it points to
        return True, parent[name]
    if isinstance(parent, ListConfig) and name.isdigit() and int(name) < len(parent):
        return True, parent[int(name)]
    if isinstance(parent, (dict, DictConfig)) and "_target_" in parent:
        target = parent["_target_"]
        try:
            target = locate(target) if isinstance(target, str) else target
            param = inspect.signature(target).parameters.get(name)
        except Exception:
            return False, None
        if param is not None and param.default is not inspect.Parameter.empty:
            return param.default is not None, param.default
    return False, None


def check_override_types(cfg, overrides) -> None:
    """Reject override values whose type does not match the config's current value.

    The current value (or, for a keyword the config leaves at its default, the target's default)
    fixes the type: int, float (an int is accepted), bool, str, list, or a node; a key whose
    value is null or an interpolation accepts anything, null may replace a str, list or node, and
    "auto" may become a bool or a number.
    ``+key=value`` (a new key) is not checked.

    Args:
        overrides: hydra ``Override`` objects (``OverridesParser.parse_overrides``).
    Raises:
        ValueError: naming the key, the value given and the type expected.
    """
    for o in overrides:
        if o.is_add():
            continue
        key, new = o.key_or_group, o.value()
        found, current = _current_value(cfg, key)
        if found and not _compatible(current, new):
            raise ValueError(
                f"Override {o.input_line or key}: expected {_type_name(current)} (the config has "
                f"{key}={current!r}), got {_type_name(new)} {new!r}"
            )


def apply_overrides(cfg, overrides: List[str]):
    """``LazyConfig.apply_overrides`` with key and type validation (hydra grammar).

    Every key and value is checked before anything is built: an unknown key raises ``KeyError``
    with the closest keys, a value of the wrong type ``ValueError`` (see
    :func:`check_override_types`).

    Args:
        cfg: a LazyConfig (omegaconf) object, modified in place.
        overrides (list[str]): ``key=value`` tokens; ``+key=value`` adds a key that does not exist.
    Returns:
        the same cfg.
    """
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    check_override_keys(cfg, [o.key_or_group for o in parsed if not o.is_add()])
    check_override_types(cfg, parsed)
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
