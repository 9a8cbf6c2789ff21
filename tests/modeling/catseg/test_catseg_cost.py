"""Cost volume and class budget against hand-written formulas."""
import pytest
import torch

from clipself.modeling.catseg import (
    UNSELECTED_LOGIT,
    cost_volume,
    gather_classes,
    scatter_classes,
    select_classes,
)


def _cos(a, b):
    return float((a @ b) / (a.norm() * b.norm()))


@pytest.mark.parametrize("batched_text", [False, True])
def test_cost_volume_is_the_cosine_of_every_pair(batched_text):
    torch.manual_seed(0)
    B, D, h, w, T, P = 2, 5, 3, 4, 3, 2
    dense = torch.randn(B, D, h, w) * 3
    text = torch.randn(B, T, P, D) if batched_text else torch.randn(T, P, D)
    cost = cost_volume(dense, text)
    assert cost.shape == (B, P, T, h, w)
    for b in range(B):
        for p in range(P):
            for t in range(T):
                e = text[b, t, p] if batched_text else text[t, p]
                for y in range(h):
                    for x in range(w):
                        want = _cos(dense[b, :, y, x], e)
                        assert abs(float(cost[b, p, t, y, x]) - want) < 1e-5


def test_cost_volume_rejects_mismatched_dims():
    with pytest.raises(ValueError, match="same D"):
        cost_volume(torch.randn(1, 4, 2, 2), torch.randn(3, 1, 5))


def test_select_classes_keeps_the_highest_peak_cost():
    B, P, T, h, w = 2, 2, 5, 2, 3
    cost = torch.zeros(B, P, T, h, w)
    # peaks: image 0 -> classes 4 (0.9), 1 (0.8), 3 (0.5); image 1 -> 0, 2, 3
    cost[0, 1, 4, 1, 2] = 0.9
    cost[0, 0, 1, 0, 0] = 0.8
    cost[0, 1, 3, 1, 1] = 0.5
    cost[1, 0, 0, 0, 1] = 0.7
    cost[1, 1, 2, 1, 0] = 0.6
    cost[1, 0, 3, 0, 2] = 0.4
    cost[:, :, :, 0, 0] -= 0.1 * torch.arange(T).float()  # spread the rest below zero
    idx = select_classes(cost, 3)
    assert idx.tolist() == [[1, 3, 4], [0, 2, 3]]  # ascending per image
    assert select_classes(cost, 5) is None and select_classes(cost, 0) is None


def test_gather_and_scatter_classes_round_trip():
    torch.manual_seed(0)
    B, T, H, W = 2, 6, 4, 5
    index = torch.tensor([[0, 2, 5], [1, 3, 4]])
    logits = torch.randn(B, T, H, W)
    picked = gather_classes(logits, index, dim=1)
    assert torch.equal(picked[1, 2], logits[1, 4])
    full = scatter_classes(picked, index, T)
    for b in range(B):
        for t in range(T):
            want = logits[b, t] if t in index[b] else torch.full((H, W), UNSELECTED_LOGIT)
            assert torch.equal(full[b, t], want)
    shared = torch.randn(T, 2, 7)  # (T, P, D) shared by the batch -> (B, K, P, D)
    assert torch.equal(gather_classes(shared, index, dim=0)[1, 0], shared[1])
    assert scatter_classes(picked, None, T) is picked
