"""F-ViT open-vocabulary predictor: formulas, losses, inference and vocabulary swaps."""
import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from clipself.modeling.fvit import OpenVocabOutputLayers, class_loss_weights, weighted_class_loss
from clipself.modeling.open_vocab import ensemble_scores
from clipself.structures import Vocabulary, build_vocabulary

D = 8


def _vocab(names, base=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(len(names) + 1, D, generator=g)
    return build_vocabulary(names, seen_classes=base, embeddings=emb)


def _predictor(vocab, **kw):
    torch.manual_seed(0)
    kw.setdefault("clip_ensemble", {"temperature": 75.0, "alpha": 0.1, "beta": 0.8})
    return OpenVocabOutputLayers(
        input_shape=ShapeSpec(channels=D),
        box2box_transform=Box2BoxTransform(weights=(10, 10, 5, 5)),
        vocabulary=vocab,
        **kw,
    )


def _proposals(boxes, gt_classes=None, gt_boxes=None, size=(64, 64)):
    inst = Instances(size)
    inst.proposal_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    if gt_classes is not None:
        inst.gt_classes = torch.tensor(gt_classes, dtype=torch.long)
    if gt_boxes is not None:
        inst.gt_boxes = Boxes(torch.tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4))
    return inst


def test_weighted_loss_by_hand():
    # K = 3 classes (class 1 novel), background weight 0.6
    w = class_loss_weights(torch.tensor([True, False, True]), 0.6)
    assert w.tolist() == pytest.approx([1, 0, 1, 0.6])
    logits = torch.tensor([[2.0, 9.0, 0.0, 1.0], [0.0, 5.0, 1.0, 3.0], [1.0, 1.0, 1.0, 1.0]],
                          requires_grad=True)
    gt = torch.tensor([0, 3, 1])  # base, background, novel (ignored)
    loss = weighted_class_loss(logits, gt, w)
    # novel column excluded from the softmax
    l0 = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(1)))
    l1 = -math.log(math.exp(3) / (1 + math.exp(1) + math.exp(3)))
    assert loss.item() == pytest.approx((l0 + 0.6 * l1 + 0) / 3, rel=1e-5)
    loss.backward()
    assert torch.all(logits.grad[:, 1] == 0), "novel logits must receive no gradient"
    assert torch.all(logits.grad[2] == 0), "a RoI labelled novel contributes nothing"
    assert torch.isfinite(logits.grad).all()


def test_weighted_loss_of_no_rois_is_zero_with_a_graph():
    logits = torch.zeros(0, 4, requires_grad=True)
    loss = weighted_class_loss(logits, torch.zeros(0, dtype=torch.long), torch.ones(4))
    assert loss.item() == 0.0
    loss.backward()


def test_ensemble_formula():
    p_det = torch.tensor([[0.5, 0.2, 0.1, 0.2]])
    p_clip = torch.tensor([[0.1, 0.6, 0.2, 0.1]])
    base = torch.tensor([True, False, True])
    out = ensemble_scores(p_det, p_clip, base, alpha=0.1, beta=0.8)
    expected = [0.5 ** 0.9 * 0.1 ** 0.1, 0.2 ** 0.2 * 0.6 ** 0.8,
                0.1 ** 0.9 * 0.2 ** 0.1, 0.2 ** 0.9 * 0.1 ** 0.1]  # background follows alpha
    assert out[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_losses_on_hand_made_proposals_and_empty_images():
    vocab = _vocab(["a", "b", "c"], base=["a", "c"])
    pred = _predictor(vocab)
    props = [
        _proposals([[0, 0, 10, 10], [5, 5, 30, 30]], [0, 3], [[0, 0, 11, 11], [0, 0, 1, 1]]),
        _proposals([[1, 1, 8, 8]], [3]),  # an image without annotations: no gt_boxes
        _proposals(torch.zeros(0, 4).tolist(), []),  # zero proposals
    ]
    x = torch.randn(3, D, requires_grad=True)
    predictions = pred(x)
    assert predictions[0].shape == (3, 4) and predictions[1].shape == (3, 4)
    with EventStorage(0):
        losses = pred.losses(predictions, props)
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert pred.temperature.grad is not None and pred.cls_fc.weight.grad.abs().sum() > 0


def test_novel_embeddings_do_not_affect_training():
    base = ["a", "c"]
    v1 = _vocab(["a", "b", "c"], base=base, seed=0)
    emb = v1.embeddings.clone()
    emb[1] = F.normalize(torch.randn(D), dim=0)  # another novel embedding
    v2 = Vocabulary(class_names=v1.class_names, embeddings=emb, background=v1.background,
                    seen_mask=v1.seen_mask)
    props = [_proposals([[0, 0, 10, 10], [5, 5, 30, 30]], [0, 3], [[0, 0, 11, 11], [0, 0, 1, 1]])]
    x = torch.randn(2, D)
    grads = []
    for v in (v1, v2):
        pred = _predictor(v)
        with EventStorage(0):
            loss = sum(pred.losses(pred(x), props).values())
        loss.backward()
        grads.append((loss.item(), pred.cls_fc.weight.grad.clone()))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-6)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-7)


def test_inference_ensemble_and_thresholds():
    vocab = _vocab(["a", "b", "c"], base=["a", "c"])
    pred = _predictor(vocab, test_score_thresh=0.0, test_topk_per_image=100)
    props = [_proposals([[0, 0, 10, 10], [20, 20, 40, 40]])]
    x, r = torch.randn(2, D), torch.randn(2, D)
    preds = pred(x, r)
    (probs,) = pred.predict_probs(preds, props)
    p_det = F.softmax(preds[0], -1)
    p_clip = F.softmax(75 * F.normalize(r, dim=-1) @ vocab.with_background().t(), -1)
    expected = ensemble_scores(p_det, p_clip, vocab.seen_mask, 0.1, 0.8)
    assert torch.allclose(probs, expected, atol=1e-6)
    # without CLIP features (or with clip_ensemble=None) the detector's softmax is used
    (probs_det,) = pred.predict_probs(pred(x), props)
    assert torch.allclose(probs_det, p_det, atol=1e-6)
    instances, _ = pred.inference(preds, props)
    assert len(instances[0]) > 0 and instances[0].pred_classes.max() < 3


def test_vocabulary_swap_needs_no_retraining():
    pred = _predictor(_vocab(["a", "b", "c"]))
    state = {k: v.clone() for k, v in pred.state_dict().items()}
    assert not any("embedding" in k or "weights" in k for k in state), "vocabulary is not saved"
    new = _vocab(["x", "y", "z", "w", "v"], seed=3)
    pred.set_vocabulary(new)
    fresh = _predictor(new)
    fresh.load_state_dict(state)  # weights trained with the old vocabulary load unchanged
    props = [_proposals([[0, 0, 10, 10], [20, 20, 40, 40]])]
    x = torch.randn(2, D)
    a, b = pred.predict_probs(pred(x), props)[0], fresh.predict_probs(fresh(x), props)[0]
    assert a.shape == (2, 6) and torch.allclose(a, b)
    assert pred.num_classes == 5
