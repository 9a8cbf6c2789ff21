"""clipself.modeling.panoptic.matcher and .criterion (docs/segmentation.md)."""
import pytest
import torch
import torch.nn.functional as F

from clipself.modeling.panoptic.criterion import (
    SetCriterion,
    calculate_uncertainty,
    dice_loss,
    make_weight_dict,
    sigmoid_ce_loss,
)
from clipself.modeling.panoptic.matcher import (
    HungarianMatcher,
    batch_dice_cost,
    batch_sigmoid_ce_cost,
)

K = 4  # classes; K is no-object


def _squares(size=32, boxes=((2, 2, 12, 12), (16, 4, 28, 14), (6, 18, 20, 30))):
    """(G, size, size) binary masks of axis-aligned boxes (x0, y0, x1, y1)."""
    masks = torch.zeros(len(boxes), size, size)
    for g, (x0, y0, x1, y1) in enumerate(boxes):
        masks[g, y0:y1, x0:x1] = 1
    return masks


def _logits_from(masks, scale=6.0):
    return scale * (2 * masks - 1)


# ---------------------------------------------------------------- pairwise costs
def test_batch_sigmoid_ce_cost_matches_loop():
    torch.manual_seed(0)
    inputs, targets = torch.randn(5, 17), torch.rand(3, 17).round()
    cost = batch_sigmoid_ce_cost(inputs, targets)
    assert cost.shape == (5, 3)
    for q in range(5):
        for g in range(3):
            ref = F.binary_cross_entropy_with_logits(inputs[q], targets[g])
            torch.testing.assert_close(cost[q, g], ref)


def test_batch_dice_cost_matches_loop():
    torch.manual_seed(1)
    inputs, targets = torch.randn(4, 11), torch.rand(2, 11)
    cost = batch_dice_cost(inputs, targets)
    assert cost.shape == (4, 2)
    for q in range(4):
        for g in range(2):
            p, t = inputs[q].sigmoid(), targets[g]
            ref = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
            torch.testing.assert_close(cost[q, g], ref)


# ---------------------------------------------------------------- matcher
def test_matcher_recovers_permutation():
    torch.manual_seed(0)
    gt = _squares()  # (3, 32, 32)
    labels = torch.tensor([2, 0, 3])
    perm = [4, 1, 3]  # gt g is predicted by query perm[g]
    Q = 6
    masks = torch.randn(Q, 16, 16) * 3  # distractors; predictions at half resolution
    logits = torch.randn(Q, K + 1)
    for g, q in enumerate(perm):
        small = F.interpolate(gt[g][None, None], size=(16, 16), mode="nearest")[0, 0]
        masks[q] = _logits_from(small) + 0.5 * torch.randn(16, 16)
        logits[q, labels[g]] += 3.0
    # a distractor with the right class but a wrong mask must not win
    logits[0, labels[0]] += 5.0
    targets = [{"labels": labels, "masks": gt}]
    outputs = {"pred_logits": logits[None], "pred_masks": masks[None]}
    matcher = HungarianMatcher(num_points=400)
    gen = torch.Generator().manual_seed(0)
    (query_idx, target_idx), = matcher(outputs, targets, generator=gen)
    assert query_idx.dtype == target_idx.dtype == torch.int64
    assert dict(zip(target_idx.tolist(), query_idx.tolist())) == dict(enumerate(perm))
    assert query_idx.tolist() == sorted(query_idx.tolist())


def test_matcher_batch_with_empty_image_and_seed():
    torch.manual_seed(0)
    gt = _squares()
    outputs = {"pred_logits": torch.randn(2, 5, K + 1), "pred_masks": torch.randn(2, 5, 8, 8)}
    targets = [
        {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 32, 32)},
        {"labels": torch.tensor([1, 2, 3]), "masks": gt.bool()},
    ]
    matcher = HungarianMatcher(num_points=64)
    a = matcher(outputs, targets, generator=torch.Generator().manual_seed(3))
    b = matcher(outputs, targets, generator=torch.Generator().manual_seed(3))
    assert a[0][0].numel() == a[0][1].numel() == 0
    assert len(a[1][0]) == 3 and sorted(a[1][1].tolist()) == [0, 1, 2]
    for (qa, ta), (qb, tb) in zip(a, b):
        assert torch.equal(qa, qb) and torch.equal(ta, tb)
    # cost matrix = weighted sum of the three terms on the same points
    m = HungarianMatcher(cost_class=1.0, cost_mask=0.0, cost_dice=0.0, num_points=8)
    c = m.cost_matrix(outputs["pred_logits"][1], outputs["pred_masks"][1], targets[1]["labels"],
                      gt)
    torch.testing.assert_close(c, -outputs["pred_logits"][1].softmax(-1)[:, 1:4])


# ---------------------------------------------------------------- pure losses
def test_sigmoid_ce_and_dice_losses_by_hand():
    inputs = torch.tensor([[0.0, 2.0], [-1.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = inputs.sigmoid()
    bce = -(targets * p.log() + (1 - targets) * (1 - p).log())  # (2, 2)
    ref = bce.mean(1).sum() / 4.0
    torch.testing.assert_close(sigmoid_ce_loss(inputs, targets, 4.0), ref)
    d0 = 1 - (2 * p[0, 0] + 1) / (p[0].sum() + 1 + 1)
    d1 = 1 - (2 * p[1, 1] + 1) / (p[1].sum() + 1 + 1)
    torch.testing.assert_close(dice_loss(inputs, targets, 2.0), (d0 + d1) / 2)
    # perfect confident masks -> ~0
    t = torch.tensor([[1.0, 0.0, 1.0]])
    assert dice_loss(_logits_from(t, 30), t, 1.0) < 1e-6
    assert sigmoid_ce_loss(_logits_from(t, 30), t, 1.0) < 1e-6
    torch.testing.assert_close(calculate_uncertainty(torch.tensor([[[-2.0, 0.5]]])),
                               torch.tensor([[[-2.0, -0.5]]]))


def test_make_weight_dict():
    w = make_weight_dict(num_aux=2)
    assert w["loss_ce"] == 2.0 and w["loss_mask"] == 5.0 and w["loss_dice"] == 5.0
    assert w["loss_dice_1"] == 5.0 and len(w) == 9


# ---------------------------------------------------------------- criterion
def _criterion(num_points=256, **kw):
    return SetCriterion(
        num_classes=K,
        matcher=HungarianMatcher(num_points=num_points),
        weight_dict=make_weight_dict(),
        num_points=num_points,
        **kw,
    )


def _targets():
    gt = _squares()
    return [
        {"labels": torch.tensor([2, 0, 3]), "masks": gt},
        {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 32, 32)},
    ]


def test_criterion_finite_with_aux_and_empty_image():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, K + 1, requires_grad=True)
    masks = torch.randn(2, 5, 16, 16, requires_grad=True)
    outputs = {
        "pred_logits": logits,
        "pred_masks": masks,
        "aux_outputs": [{"pred_logits": logits * 0.5, "pred_masks": masks * 0.5}] * 2,
    }
    crit = _criterion()
    raw = crit.compute_losses(outputs, _targets())
    assert set(raw) == {f"loss_{n}{s}" for n in ("ce", "mask", "dice") for s in ("", "_0", "_1")}
    assert all(torch.isfinite(v) and v.ndim == 0 for v in raw.values())
    weighted = crit(outputs, _targets())
    torch.testing.assert_close(weighted["loss_ce_1"], 2.0 * raw["loss_ce_1"])
    sum(weighted.values()).backward()
    assert torch.isfinite(logits.grad).all() and masks.grad.abs().sum() > 0


def test_criterion_all_empty_targets():
    logits = torch.randn(2, 3, K + 1, requires_grad=True)
    masks = torch.randn(2, 3, 8, 8, requires_grad=True)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 8, 8)}
    losses = _criterion()({"pred_logits": logits, "pred_masks": masks}, [empty, empty])
    assert losses["loss_mask"] == 0 and losses["loss_dice"] == 0
    # every query targets no-object: weighted CE = plain CE (all weights eos_coef)
    ref = F.cross_entropy(logits.reshape(-1, K + 1), torch.full((6,), K))
    torch.testing.assert_close(losses["loss_ce"], 2.0 * ref)
    sum(losses.values()).backward()
    assert masks.grad is not None


def test_criterion_ce_uses_eos_weight():
    gt = _squares(boxes=((0, 0, 4, 4),), size=8)
    logits = torch.randn(1, 3, K + 1)
    masks = _logits_from(gt)[None].repeat(1, 3, 1, 1)
    targets = [{"labels": torch.tensor([1]), "masks": gt}]
    crit = SetCriterion(K, lambda o, t: [(torch.tensor([2]), torch.tensor([0]))],
                        make_weight_dict(), eos_coef=0.1, losses=("labels",))
    loss = crit.compute_losses({"pred_logits": logits, "pred_masks": masks}, targets)["loss_ce"]
    w = torch.tensor([0.1, 0.1, 1.0])
    nll = -logits[0].log_softmax(-1)[torch.arange(3), torch.tensor([K, K, 1])]
    torch.testing.assert_close(loss, (w * nll).sum() / w.sum())


def test_criterion_rejects_bad_config():
    with pytest.raises(ValueError):
        _criterion(losses=("labels", "boxes"))
    with pytest.raises(KeyError):
        SetCriterion(K, HungarianMatcher(), {"loss_ce": 1.0})


def test_criterion_decreases_on_tiny_overfit():
    torch.manual_seed(0)
    logits = torch.zeros(2, 5, K + 1, requires_grad=True)
    masks = (0.1 * torch.randn(2, 5, 16, 16)).requires_grad_()
    targets = _targets()
    targets[1] = {"labels": torch.tensor([1]), "masks": _squares(boxes=((8, 8, 30, 30),))}
    crit = _criterion(num_points=196)
    opt = torch.optim.Adam([logits, masks], lr=0.2)
    totals = []
    for _ in range(20):
        loss = sum(crit({"pred_logits": logits, "pred_masks": masks}, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(loss.item())
    assert all(map(lambda v: v == v, totals))
    assert totals[-1] < 0.4 * totals[0], totals[::4]
