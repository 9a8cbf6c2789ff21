"""CLIP-score ensembles: a trained open-vocabulary classifier combined with the CLIP score of
the frozen tower's dense features, pooled on the prediction (boxes for F-ViT, masks for the
panoptic head). Classes seen in training lean on the trained classifier (exponent ``alpha``),
unseen ones on CLIP (``beta``). See ``docs/open_vocabulary.md``.

Two forms, on purpose (they are the two published recipes):

* :func:`ensemble_scores` (F-ViT, paper Sec. 4.2): on probabilities, background included with the
  seen classes;
* :func:`ensemble_clip_logits` (ODISE, used by the panoptic head): in log space over the K
  classes, the void probability of the trained classifier kept aside.
"""
from typing import Tuple

import torch

__all__ = ["ENSEMBLE_MODES", "ensemble_for_mode", "ensemble_clip_logits", "ensemble_scores"]

#: "pred": learned branch only (alpha = beta = 0); "clip": CLIP score only, keeping the
#: learned void probability (alpha = beta = 1); "ensemble": geometric ensemble
#: (docs/segmentation.md §6).
ENSEMBLE_MODES = ("pred", "clip", "ensemble")


def ensemble_for_mode(mode: str, alpha: float = 0.35, beta: float = 0.65) -> Tuple[float, float]:
    """The (alpha, beta) exponents of an ensemble mode.

    Args:
        mode (str): one of :data:`ENSEMBLE_MODES`.
        alpha (float): CLIP exponent for seen classes in "ensemble" mode (label model 0.3,
            caption model / ODISE default 0.35).
        beta (float): CLIP exponent for unseen classes in "ensemble" mode (0.7 / 0.65).
    Returns:
        tuple[float, float]: (alpha, beta).
    """
    if mode == "pred":
        return 0.0, 0.0
    if mode == "clip":
        return 1.0, 1.0
    if mode == "ensemble":
        return float(alpha), float(beta)
    raise ValueError(f"Unknown ensemble mode {mode!r}; expected one of {ENSEMBLE_MODES}")


def ensemble_clip_logits(
    pred_logits: torch.Tensor,
    clip_logits: torch.Tensor,
    seen_mask: torch.Tensor,
    alpha: float,
    beta: float,
) -> torch.Tensor:
    """Geometric ensemble of the learned and CLIP classifiers (docs/segmentation.md §6).

    With ``P = softmax_K(pred_logits[:, :K])``, ``C = softmax_K(clip_logits)`` and
    ``w_k = alpha`` for seen classes, ``beta`` for unseen ones:
    ``ens_k = (1 - w_k) log P_k + w_k log C_k``; the scores are
    ``log([softmax_K(ens) * (1 - p_void), p_void] + 1e-8)`` where ``p_void`` is the void
    probability of the learned (K+1)-way softmax. alpha = beta = 0 gives back the learned
    (K+1)-way probabilities; alpha = beta = 1 gives ``C * (1 - p_void)``.

    Args:
        pred_logits (Tensor): (Q, K+1) learned logits, void last.
        clip_logits (Tensor): (Q, K) CLIP logits (e.g. 100 * cosine, max over synonyms).
        seen_mask (Tensor): (K,) bool, True for classes of the training vocabulary.
        alpha (float): CLIP exponent for seen classes.
        beta (float): CLIP exponent for unseen classes.
    Returns:
        Tensor: (Q, K+1) log-probabilities (fp32), usable wherever logits are (softmax of them
        gives back the probabilities up to the 1e-8).
    """
    K = clip_logits.shape[-1]
    if pred_logits.shape[-1] != K + 1:
        raise ValueError(
            f"ensemble_clip_logits: pred_logits has {pred_logits.shape[-1]} columns, "
            f"expected K+1 = {K + 1}"
        )
    pred_logits, clip_logits = pred_logits.float(), clip_logits.float()
    p_void = pred_logits.softmax(-1)[:, -1:]  # (Q, 1)
    log_p = pred_logits[:, :-1].log_softmax(-1)  # (Q, K)
    log_c = clip_logits.log_softmax(-1)  # (Q, K)
    seen = seen_mask.to(device=pred_logits.device, dtype=torch.bool)
    w = torch.where(seen, alpha, beta).to(log_p)  # (K,)
    # the where()s keep 0 * (-inf) out when a weight is exactly 0 or 1
    ens = torch.where(w > 0, w * log_c, 0.0) + torch.where(w < 1, (1 - w) * log_p, 0.0)  # (Q, K)
    probs = ens.softmax(-1) * (1 - p_void)  # (Q, K)
    return torch.log(torch.cat([probs, p_void], dim=-1) + 1e-8)  # (Q, K+1)


def ensemble_scores(
    p_det: torch.Tensor, p_clip: torch.Tensor, seen_mask: torch.Tensor, alpha: float, beta: float
) -> torch.Tensor:
    """Geometric detector/CLIP score ensemble (docs/fvit.md §6).

    Base columns and background: ``p_det^(1-alpha) * p_clip^alpha``; novel columns:
    ``p_det^(1-beta) * p_clip^beta``.

    Args:
        p_det (Tensor): (R, K+1) detector softmax, background last.
        p_clip (Tensor): (R, K+1) CLIP softmax on the proposals' dense features.
        seen_mask (Tensor): (K,) bool, True for base (seen) classes.
    Returns:
        Tensor: (R, K+1).
    """
    base = torch.cat([seen_mask, seen_mask.new_ones(1)])  # background follows the base rule
    a = torch.where(base, torch.full_like(base, alpha, dtype=p_det.dtype),
                    torch.full_like(base, beta, dtype=p_det.dtype))  # (K+1,)
    return p_det.pow(1.0 - a) * p_clip.pow(a)
