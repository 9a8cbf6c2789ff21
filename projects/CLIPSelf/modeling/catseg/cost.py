"""Image-text cost volume and the class budget (docs/segmentation.md §8).

Shape shorthand in this module: B images, D CLIP embedding dim, T classes, P prompt templates,
h/w token grid, K the class budget (classes kept per image), H/W output map size.
"""
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["cost_volume", "select_classes", "gather_classes", "scatter_classes", "UNSELECTED_LOGIT"]

#: logit of classes dropped by :func:`select_classes` (sigmoid(-100) = 0 in float32)
UNSELECTED_LOGIT = -100.0


def cost_volume(dense: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every location with every class embedding of every template.

    Args:
        dense (Tensor): (B, D, h, w) image features (normalised here).
        text (Tensor): (T, P, D) class embeddings shared by the batch, or (B, T, P, D) per image
            (normalised here).
    Returns:
        Tensor: (B, P, T, h, w) cost ``C[b, p, t, y, x] = cos(dense[b, :, y, x], text[b, t, p])``.
    """
    if dense.dim() != 4 or text.dim() not in (3, 4) or dense.shape[1] != text.shape[-1]:
        raise ValueError(
            f"cost_volume: dense (B, D, h, w) and text (T, P, D) / (B, T, P, D) with the same D; "
            f"got {tuple(dense.shape)} and {tuple(text.shape)}"
        )
    d = F.normalize(dense, dim=1)
    t = F.normalize(text.to(d.dtype), dim=-1)
    if t.dim() == 3:
        return torch.einsum("bdyx,tpd->bptyx", d, t)
    return torch.einsum("bdyx,btpd->bptyx", d, t)


def select_classes(cost: torch.Tensor, budget: int) -> Optional[torch.Tensor]:
    """The ``budget`` classes of highest peak cost per image (vocabularies larger than the
    class budget, docs/segmentation.md §8 ``pad_len``).

    Args:
        cost (Tensor): (B, P, T, h, w) cost volume.
        budget (int): classes to keep (K); <= 0 disables the selection.
    Returns:
        Tensor or None: (B, K) long indices into the T classes, ascending per image; None when
        ``T <= budget`` (or the budget is off): every class is kept.
    """
    B, P, T = cost.shape[:3]
    if budget <= 0 or T <= budget:
        return None
    score = cost.detach().permute(0, 2, 1, 3, 4).reshape(B, T, -1).amax(dim=-1)  # (B, T)
    index = score.topk(budget, dim=1).indices  # (B, K)
    return index.sort(dim=1).values


def gather_classes(x: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    """Select per-image classes along ``dim`` of a batched tensor.

    Args:
        x (Tensor): (B, ..., T, ...) with the class axis at ``dim`` (> 0), or (T, ...) shared by
            the batch (``dim=0``; broadcast to (B, K, ...)).
        index (Tensor): (B, K) long.
        dim (int): the class axis of ``x``.
    Returns:
        Tensor: ``x`` with the class axis replaced by the K selected classes (batched).
    """
    if dim == 0:  # shared (T, ...) -> (B, K, ...)
        return x[index]
    shape = [1] * x.dim()
    shape[0], shape[dim] = index.shape
    expand = list(x.shape)
    expand[dim] = index.shape[1]
    return x.gather(dim, index.view(shape).expand(expand))


def scatter_classes(
    logits: torch.Tensor, index: Optional[torch.Tensor], num_classes: int,
    fill: float = UNSELECTED_LOGIT,
) -> torch.Tensor:
    """Put the logits of the selected classes back among all classes.

    Args:
        logits (Tensor): (B, K, H, W) logits of the selected classes.
        index (Tensor or None): (B, K) from :func:`select_classes`; None returns ``logits``.
        num_classes (int): T.
        fill (float): logit of the unselected classes.
    Returns:
        Tensor: (B, T, H, W).
    """
    if index is None:
        return logits
    B, K, H, W = logits.shape
    out = logits.new_full((B, num_classes, H, W), fill)
    return out.scatter(1, index.view(B, K, 1, 1).expand(B, K, H, W), logits)
