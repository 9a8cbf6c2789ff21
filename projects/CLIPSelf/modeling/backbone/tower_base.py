"""What every CLIP tower wrapper shares (docs/dense_features.md §1, §9): building ``visual`` and
its family adapter from an open_clip config, loading ``pretrained=``, freezing and lock groups,
and the autocast / no-grad context of a forward."""
import contextlib
from typing import Any, List, Mapping, Optional, Union

import torch
from detectron2.modeling import Backbone
from torch import nn

from .tower_config import (
    FREEZE_MODES,
    build_visual_tower,
    is_pretrained_tag,
    parse_autocast_dtype,
    resolve_model_config,
    resolve_pretrained,
)
from .tower_weights import load_tower_weights
from .towers import tower_adapter

__all__ = ["CLIPTowerBase"]


class CLIPTowerBase(Backbone):
    """Base of :class:`CLIPViT` and :class:`CLIPConvTower`; subclasses call the ``_setup_*``
    helpers from ``__init__`` and define :meth:`lock_groups`.

    Attributes set here: ``model_name``, ``model_cfg``, ``visual`` (open_clip's ``model.visual``,
    state-dict keys ``visual.*``), ``tower`` (the family adapter, :mod:`.towers`), ``family``,
    ``embed_dim``, ``autocast_dtype``, ``freeze``, ``load_report``.
    """

    def _setup_tower(self, model_name: Union[str, Mapping], pretrained: Any) -> None:
        name, cfg = resolve_model_config(model_name)
        if is_pretrained_tag(pretrained) and pretrained.lower() == "openai" and \
                "quick_gelu" not in cfg:
            cfg["quick_gelu"] = True  # OpenAI weights were trained with QuickGELU
        self.model_name = name
        self.model_cfg = cfg
        self.visual = build_visual_tower(cfg)
        self.tower = tower_adapter(self.visual, int(cfg["embed_dim"]))
        self.family = self.tower.family
        self.embed_dim = int(cfg["embed_dim"])

    def _setup_options(self, freeze: str, autocast_dtype: Optional[str]) -> None:
        if freeze not in FREEZE_MODES:
            raise ValueError(f"freeze={freeze!r}; choose from {FREEZE_MODES}")
        self.autocast_dtype = parse_autocast_dtype(autocast_dtype)

    def _setup_weights(
        self, pretrained: Any, strict_load: bool, cache_dir: Optional[str]
    ) -> None:
        self.load_report = None
        if pretrained is not None and not (isinstance(pretrained, str) and pretrained == ""):
            source = resolve_pretrained(pretrained, self.model_name, cache_dir)
            self.load_report = load_tower_weights(self.visual, self.tower, source, strict_load)

    def _setup_freeze(self, freeze: str, unlocked_groups: Optional[int], depth: int) -> None:
        self.freeze = freeze
        if unlocked_groups is not None:
            if freeze not in ("none", "all"):
                raise ValueError("unlocked_groups combines only with freeze='none' or 'all'")
            self.lock(unlocked_groups)
        elif freeze == "all" or freeze == "frozen":
            self.lock(0)
        elif freeze == "clipself":
            self.lock(depth)
        if freeze == "frozen":
            self.eval()

    # ------------------------------------------------------------------ freezing
    def lock_groups(self) -> List[List[nn.Parameter]]:
        raise NotImplementedError

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

    def _context(self, x: torch.Tensor):
        stack = contextlib.ExitStack()
        if self.freeze == "frozen":
            stack.enter_context(torch.no_grad())
        if self.autocast_dtype is not None:
            stack.enter_context(
                torch.autocast(device_type=x.device.type, dtype=self.autocast_dtype)
            )
        return stack
