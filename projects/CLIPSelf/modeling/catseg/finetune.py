"""Which CLIP image-tower parameters CAT-Seg fine-tunes, and at what learning rate
(docs/segmentation.md §9, §11).

Policies:
    "attention": the attention projections of every block (OpenAI-style open_clip towers:
        ``attn.in_proj_weight``, ``attn.in_proj_bias``, ``attn.out_proj.*``; timm EVA02:
        ``attn.qkv.weight``, ``attn.q_bias``, ``attn.v_bias``, ``attn.{q,k,v}_proj.*``,
        ``attn.proj.*``) plus the positional embedding; everything else frozen. The old CAT-Seg
        used by CLIPSelf; the default.
    "qv": only the query and value projection weights (CAT-Seg HEAD). A fused q/k/v weight stays
        trainable with a gradient hook that zeroes the rows of k.
    "frozen": nothing in the tower trains.

The tower trains at ``lr * clip_multiplier`` (0.01): use :func:`catseg_lr_factor` as the
``lr_factor_func`` of :func:`clipself.solver.build_param_groups`.
"""
import re
import weakref
from typing import List, Sequence

import torch
from torch import nn

from ...solver import build_param_groups

__all__ = [
    "FINETUNE_POLICIES", "apply_finetune_policy", "catseg_lr_factor", "catseg_param_groups",
    "finetune_masks",
]

FINETUNE_POLICIES = ("attention", "qv", "frozen")

_ATTENTION = re.compile(
    r"(^|\.)attn\.(in_proj_weight|in_proj_bias|out_proj\.(weight|bias)|qkv\.(weight|bias)"
    r"|q_bias|v_bias|[qkv]_proj\.(weight|bias)|proj\.(weight|bias))$"
)
_POSITION = re.compile(r"(^|\.)(positional_embedding|pos_embed)$")
_QV = re.compile(r"(^|\.)attn\.[qv]_proj\.weight$")
_FUSED_QKV = re.compile(r"(^|\.)attn\.(in_proj_weight|qkv\.weight)$")

#: tower -> gradient-hook handles installed by apply_finetune_policy
_HOOKS: "weakref.WeakKeyDictionary[nn.Module, list]" = weakref.WeakKeyDictionary()


def _check(policy: str) -> None:
    if policy not in FINETUNE_POLICIES:
        raise ValueError(f"fine-tune policy {policy!r}; choose from {FINETUNE_POLICIES}")


def _qv_row_mask(param: torch.Tensor) -> torch.Tensor:
    """(3n, 1) mask of a fused [q; k; v] weight: 1 on the q and v rows, 0 on the k rows."""
    n = param.shape[0] // 3
    mask = torch.ones(param.shape[0], 1, dtype=param.dtype, device=param.device)
    mask[n:2 * n] = 0
    return mask


def finetune_masks(clip_module: nn.Module, policy: str) -> dict:
    """Parameter name -> True (trainable) / False (frozen) / "qv" (fused, q and v rows only).

    Args:
        clip_module (nn.Module): a :class:`clipself.modeling.CLIPViT` or an open_clip visual tower.
        policy (str): one of :data:`FINETUNE_POLICIES`.
    """
    _check(policy)
    out = {}
    for name, _ in clip_module.named_parameters():
        if policy == "attention":
            out[name] = bool(_ATTENTION.search(name) or _POSITION.search(name))
        elif policy == "qv":
            out[name] = True if _QV.search(name) else ("qv" if _FUSED_QKV.search(name) else False)
        else:
            out[name] = False
    return out


def apply_finetune_policy(clip_module: nn.Module, policy: str) -> List[str]:
    """Set ``requires_grad`` of the tower's parameters by ``policy`` (and the k-row gradient
    mask of fused q/k/v weights under "qv"); re-applying replaces earlier hooks.

    With "qv", the k rows of a fused weight get zero gradient, so Adam leaves them unchanged,
    but decoupled weight decay (AdamW) still shrinks them slightly: give those parameters
    weight decay 0 if they must stay exactly fixed.

    Args:
        clip_module (nn.Module): a :class:`clipself.modeling.CLIPViT` or an open_clip visual tower.
        policy (str): one of :data:`FINETUNE_POLICIES`.
    Returns:
        list[str]: the names of the trainable parameters.
    """
    masks = finetune_masks(clip_module, policy)
    for handle in _HOOKS.pop(clip_module, []):
        handle.remove()
    hooks, trainable = [], []
    for name, param in clip_module.named_parameters():
        mode = masks[name]
        param.requires_grad_(bool(mode))
        if mode == "qv":
            row_mask = _qv_row_mask(param)
            hooks.append(param.register_hook(lambda g, m=row_mask: g * m.to(g.dtype)))
        if mode:
            trainable.append(name)
    _HOOKS[clip_module] = hooks
    return trainable


def catseg_lr_factor(
    name: str, policy: str = "attention", clip_multiplier: float = 0.01, clip_prefix: str = "clip."
) -> float:
    """Learning-rate factor of a :class:`~clipself.modeling.catseg.CATSeg` parameter.

    Args:
        name (str): parameter name in the model (``clip.*`` for the CLIP tower).
        policy (str): the tower's fine-tune policy ("frozen": tower factor 0).
        clip_multiplier (float): factor of the trainable tower parameters (``CLIP_MULTIPLIER``).
        clip_prefix (str): name prefix of the tower in the model.
    Returns:
        float: ``clip_multiplier`` for tower parameters (0 under "frozen"), 1 otherwise.
    """
    _check(policy)
    if name.startswith(clip_prefix):
        return 0.0 if policy == "frozen" else float(clip_multiplier)
    return 1.0


#: CAT-Seg's weight-decay exemptions: norm layers and embeddings (docs/segmentation.md §9)
CATSEG_NO_DECAY_KEYWORDS = ("norm", "ln_", ".ln", "pos_embed", "positional_embedding",
                            "class_embedding", "cls_token", "embed_tokens", "pad_tokens")


def catseg_param_groups(
    model: nn.Module,
    *,
    base_lr: float,
    weight_decay: float,
    clip_multiplier: float = 0.01,
    clip_prefix: str = "clip.",
    no_decay_keywords: Sequence[str] = CATSEG_NO_DECAY_KEYWORDS,
) -> List[dict]:
    """Optimizer groups of a CAT-Seg model: trainable tower parameters at
    ``base_lr * clip_multiplier``, the head at ``base_lr``; no decay on norms, embeddings and
    1-d parameters. Frozen parameters are left out (the fine-tune policy decides)."""
    return build_param_groups(
        model, weight_decay=weight_decay, no_decay_keywords=no_decay_keywords,
        no_decay_ndim_below=2, base_lr=base_lr,
        lr_factor_func=lambda n: catseg_lr_factor(n, "attention", clip_multiplier, clip_prefix),
    )
