"""K-Means on dense features (paper Figure 4), a pure torch function."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = ["kmeans"]


def kmeans(
    x: torch.Tensor,
    k: int,
    *,
    iters: int = 50,
    cosine: bool = True,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cluster N points into k groups (k-means++ seeding, Lloyd iterations, all vectorised).

    Args:
        x (Tensor): (N, D) points.
        k (int): number of clusters (clamped to N).
        iters (int): maximum Lloyd iterations (stops early when assignments settle).
        cosine (bool): cluster L2-normalised points by cosine similarity (spherical k-means).
        generator (torch.Generator): for reproducible seeding.
    Returns:
        (labels (N,) int64, centres (k, D)).
    """
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"kmeans expects a non-empty (N, D) tensor, got {tuple(x.shape)}")
    x = x.float()
    if cosine:
        x = F.normalize(x, dim=-1)
    n = x.shape[0]
    k = min(k, n)
    # k-means++ seeding
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [x[first]]
    dist = torch.cdist(x, x[first][None]).squeeze(1) ** 2  # (N,)
    for _ in range(1, k):
        probs = dist / dist.sum() if dist.sum() > 0 else torch.full_like(dist, 1.0 / n)
        idx = int(torch.multinomial(probs, 1, generator=generator))
        centres.append(x[idx])
        dist = torch.minimum(dist, torch.cdist(x, x[idx][None]).squeeze(1) ** 2)
    c = torch.stack(centres)  # (k, D)
    labels = torch.full((n,), -1, dtype=torch.long)
    for _ in range(iters):
        new = torch.cdist(x, c).argmin(dim=1)  # (N,)
        if torch.equal(new, labels):
            break
        labels = new
        sums = torch.zeros_like(c).index_add_(0, labels, x)  # (k, D)
        counts = torch.bincount(labels, minlength=k).clamp(min=1)[:, None].float()
        empty = torch.bincount(labels, minlength=k) == 0
        c = torch.where(empty[:, None], c, sums / counts)
        if cosine:
            c = F.normalize(c, dim=-1)
    return labels, c
