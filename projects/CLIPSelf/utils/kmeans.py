"""K-Means on dense features (paper Figure 4): SciPy's ``kmeans2`` on torch tensors."""
import warnings
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.cluster.vq import kmeans2

__all__ = ["kmeans"]


def kmeans(
    x: torch.Tensor,
    k: int,
    *,
    iters: int = 50,
    cosine: bool = True,
    seed: int = 0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cluster N points into k groups: k-means++ seeding and Lloyd iterations
    (``scipy.cluster.vq.kmeans2``).

    Args:
        x (Tensor): (N, D) points.
        k (int): number of clusters (clamped to N).
        iters (int): Lloyd iterations.
        cosine (bool): cluster the L2-normalised points, and return normalised centres (the
            Euclidean distance of unit vectors orders them as their cosine similarity does).
        seed (int): seeds the k-means++ initialisation.
    Returns:
        (labels (N,) int64, centres (k, D) float32).
    """
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"kmeans expects a non-empty (N, D) tensor, got {tuple(x.shape)}")
    x = x.detach().float().cpu()
    if cosine:
        x = F.normalize(x, dim=-1)
    k = min(k, x.shape[0])
    with warnings.catch_warnings():
        # a cluster that empties keeps its previous centre; SciPy warns about it
        warnings.simplefilter("ignore", UserWarning)
        centres, labels = kmeans2(
            x.numpy().astype(np.float64), k, iter=iters, minit="++",
            rng=np.random.default_rng(seed),
        )
    c = torch.from_numpy(centres).float()
    if cosine:
        c = F.normalize(c, dim=-1)
    return torch.from_numpy(labels).long(), c
