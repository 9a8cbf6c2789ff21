"""clipself.modeling.panoptic.transformer_decoder (docs/segmentation.md §4, §3.3)."""
import math

import pytest
import torch
from torch import nn

from clipself.modeling.dense_ops import pool_masks
from clipself.modeling.panoptic import (
    HungarianMatcher,
    MultiScaleMaskedTransformerDecoder,
    OpenVocabClassHead,
    SetCriterion,
    attention_mask_from_masks,
    make_weight_dict,
)
from clipself.modeling.panoptic.transformer_decoder import CrossAttentionLayer
from clipself.structures import cosine_logits

HID, MDIM, TDIM, EDIM, Q, NH = 32, 16, 12, 24, 9, 4
LEVEL_SIZES = (2, 4, 8)  # coarse -> fine
MASK_SIZE = 16


def _head(seed=0, **kw):
    torch.manual_seed(seed)
    return OpenVocabClassHead(hidden_dim=HID, mask_dim=MDIM, text_dim=TDIM, embed_dim=EDIM, **kw)


def _decoder(dec_layers=3, in_channels=HID, pre_norm=False, enforce_input_project=False):
    head = _head()
    return MultiScaleMaskedTransformerDecoder(
        in_channels=in_channels,
        hidden_dim=HID,
        num_queries=Q,
        nheads=NH,
        dim_feedforward=64,
        dec_layers=dec_layers,
        pre_norm=pre_norm,
        mask_dim=MDIM,
        enforce_input_project=enforce_input_project,
        class_head=head,
    )


def _inputs(batch=2, in_channels=HID, num_classes=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(batch, in_channels, s, s, generator=g) for s in LEVEL_SIZES]
    mask_features = torch.randn(batch, MDIM, MASK_SIZE, MASK_SIZE, generator=g)
    text = torch.randn(num_classes, TDIM, generator=g)
    return feats, mask_features, text


# ---------------------------------------------------------------- pure functions
def test_attention_mask_rule():
    masks = torch.full((2, 3, 4, 4), -5.0)  # (B, Q, H, W) logits
    masks[0, 1, :2, :2] = 5.0  # image 0, query 1: top-left quadrant only
    masks[1, 2] = 5.0  # image 1, query 2: everywhere
    # query 0 of both images (and the rest) is below 0.5 everywhere -> fully unmasked
    out = attention_mask_from_masks(masks, (2, 2), nheads=3)
    assert out.shape == (2 * 3, 3, 4) and out.dtype == torch.bool
    expected = torch.zeros(2, 3, 4, dtype=torch.bool)  # True = not allowed
    expected[0, 1] = torch.tensor([False, True, True, True])
    for b in range(2):
        for m in range(3):  # nn.MultiheadAttention order: b * nheads + m
            assert torch.equal(out[b * 3 + m], expected[b])


def test_attention_mask_threshold_is_sigmoid_half():
    masks = torch.tensor([[[[0.0, -1e-3, 1.0]]]])  # sigmoid(0) = 0.5 is allowed
    out = attention_mask_from_masks(masks, (1, 3), nheads=1)
    assert out.tolist() == [[[False, True, False]]]


def test_batched_mask_pooling_by_hand():
    feats = torch.arange(8.0).reshape(1, 2, 2, 2)  # ch0 = [[0,1],[2,3]], ch1 = [[4,5],[6,7]]
    masks = torch.tensor([[[[1, 0], [0, 1]], [[0, 0], [0, 0]]]], dtype=torch.bool)
    out = pool_masks(feats, masks, eps=1e-8)  # the class head's (B, Q, h, w) masks
    assert out.shape == (2, 2)
    torch.testing.assert_close(out[0], torch.tensor([1.5, 5.5]))
    torch.testing.assert_close(out[1], torch.zeros(2))  # empty mask -> 0 (eps)
    weights = torch.tensor([[[[0.5, 0.0], [0.0, 0.0]]]])  # float weights: 0.5 * F / 0.5
    torch.testing.assert_close(pool_masks(feats, weights, eps=1e-8)[0], torch.tensor([0.0, 4.0]))


# ---------------------------------------------------------------- class head
def test_logit_scale_init_and_clamp():
    head = _head()
    torch.testing.assert_close(head.scale(), torch.tensor(1 / 0.07))
    with torch.no_grad():
        head.logit_scale.fill_(math.log(1000.0))
    assert head.scale().item() == pytest.approx(100.0)
    _, mask_features, text = _inputs(batch=1)
    logits = head(torch.randn(1, Q, HID), torch.randn(1, Q, 16, 16), mask_features, text)
    assert logits.abs().max() <= 100.0 + 1e-4


def test_null_logit_is_last_and_projected_like_text():
    null = torch.randn(TDIM)
    head = _head(null_init=null)
    torch.testing.assert_close(head.null_embed.detach(), null)
    _, mask_features, _ = _inputs(batch=1)
    dec, mask_pred = torch.randn(1, Q, HID), torch.randn(1, Q, 16, 16)
    text = null[None].expand(3, -1)  # every class equals the null embedding
    logits = head(dec, mask_pred, mask_features, text)
    assert logits.shape == (1, Q, 4)
    torch.testing.assert_close(logits[..., :3], logits[..., 3:].expand(-1, -1, 3))
    # changing the null embedding changes only the last column
    text = torch.randn(3, TDIM)
    before = head(dec, mask_pred, mask_features, text)
    with torch.no_grad():
        head.null_embed.add_(1.0)
    after = head(dec, mask_pred, mask_features, text)
    torch.testing.assert_close(after[..., :3], before[..., :3])
    assert not torch.allclose(after[..., 3], before[..., 3])


def test_class_head_binarises_detached_masks():
    head = _head()
    _, mask_features, text = _inputs(batch=1)
    dec = torch.randn(1, Q, HID)
    mask_pred = torch.randn(1, Q, 16, 16, requires_grad=True)
    logits = head(dec, mask_pred, mask_features, text)
    torch.testing.assert_close(head(dec, 3 * mask_pred, mask_features, text), logits)
    logits.sum().backward()
    assert mask_pred.grad is None
    # by hand: pool inside sigmoid > 0.5, add to the decoder output, embed, cosine
    pooled = pool_masks(mask_features, mask_pred.detach() > 0, eps=1e-8).reshape(1, Q, -1)
    e = head.embed_mlp(head.embed_norm(head.pool_proj(head.pool_norm(pooled)) + dec))
    ref = cosine_logits(e, head.text_proj(torch.cat([text, head.null_embed[None]])), 1 / 0.07)
    torch.testing.assert_close(logits, ref)


def test_class_head_rejects_bad_text_shape():
    head = _head()
    _, mask_features, _ = _inputs(batch=1)
    dec, mask_pred = torch.randn(1, Q, HID), torch.randn(1, Q, 16, 16)
    with pytest.raises(ValueError):  # synonyms must be averaged by the caller
        head(dec, mask_pred, mask_features, torch.randn(2, 3, TDIM))
    with pytest.raises(ValueError):
        head(dec, mask_pred, mask_features, torch.randn(2, TDIM + 1))


# ---------------------------------------------------------------- decoder
@pytest.mark.parametrize("dec_layers,in_channels,pre_norm", [(3, HID, False), (9, 20, True)])
def test_decoder_prediction_shapes(dec_layers, in_channels, pre_norm):
    decoder = _decoder(dec_layers=dec_layers, in_channels=in_channels, pre_norm=pre_norm)
    feats, mask_features, text = _inputs(in_channels=in_channels)
    out = decoder(feats, mask_features, text)
    assert len(out["aux_outputs"]) == dec_layers
    for pred in out["aux_outputs"] + [out]:
        assert pred["pred_logits"].shape == (2, Q, 6)
        assert pred["pred_masks"].shape == (2, Q, MASK_SIZE, MASK_SIZE)
        assert torch.isfinite(pred["pred_logits"]).all()
        assert torch.isfinite(pred["pred_masks"]).all()


def test_input_projection_identity_or_conv():
    assert all(isinstance(p, nn.Identity) for p in _decoder().input_proj)
    assert all(isinstance(p, nn.Conv2d) for p in _decoder(enforce_input_project=True).input_proj)
    assert all(isinstance(p, nn.Conv2d) for p in _decoder(in_channels=20).input_proj)


def test_decoder_argument_checks():
    with pytest.raises(ValueError):
        _decoder(dec_layers=0)
    with pytest.raises(ValueError):  # class head built for another mask_dim
        MultiScaleMaskedTransformerDecoder(
            hidden_dim=HID, nheads=NH, mask_dim=MDIM + 1, class_head=_head(), in_channels=HID
        )


def test_cross_attention_masks_follow_previous_predictions():
    decoder = _decoder(dec_layers=3).eval()
    seen = []

    def hook(module, args, kwargs):
        seen.append(kwargs["attn_mask"])

    handles = [
        layer.register_forward_pre_hook(hook, with_kwargs=True)
        for layer in decoder.modules()
        if isinstance(layer, CrossAttentionLayer)
    ]
    feats, mask_features, text = _inputs()
    with torch.no_grad():
        out = decoder(feats, mask_features, text)
    for h in handles:
        h.remove()
    preds = out["aux_outputs"] + [out]
    assert len(seen) == 3
    for i, attn_mask in enumerate(seen):  # layer i reads level i % 3, mask of prediction i
        size = (LEVEL_SIZES[i % 3],) * 2
        assert attn_mask.shape == (2 * NH, Q, size[0] * size[1])
        expected = attention_mask_from_masks(preds[i]["pred_masks"], size, NH)
        assert torch.equal(attn_mask, expected)


def test_gradients_reach_queries_and_class_head():
    decoder = _decoder(dec_layers=3)
    feats, mask_features, text = _inputs()
    out = decoder(feats, mask_features, text)
    loss = sum(p["pred_logits"].sum() + p["pred_masks"].sum() for p in out["aux_outputs"] + [out])
    loss.backward()
    head = decoder.class_head
    for param in (
        decoder.query_feat.weight,
        decoder.query_embed.weight,
        decoder.level_embed.weight,
        head.text_proj.weight,
        head.null_embed,
        head.logit_scale,
        head.pool_proj.weight,
    ):
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_vocabulary_size_change_same_weights():
    decoder = _decoder(dec_layers=3).eval()
    feats, mask_features, text7 = _inputs(num_classes=7)
    with torch.no_grad():
        out5 = decoder(feats, mask_features, text7[:5])
        out7 = decoder(feats, mask_features, text7)
    assert out5["pred_logits"].shape == (2, Q, 6)
    assert out7["pred_logits"].shape == (2, Q, 8)
    torch.testing.assert_close(out5["pred_masks"], out7["pred_masks"])
    torch.testing.assert_close(out5["pred_logits"][..., :5], out7["pred_logits"][..., :5])
    torch.testing.assert_close(out5["pred_logits"][..., 5], out7["pred_logits"][..., 7])


def test_decoder_outputs_feed_set_criterion():
    torch.manual_seed(0)
    num_classes = 5
    decoder = _decoder(dec_layers=3)
    feats, mask_features, text = _inputs(num_classes=num_classes)
    out = decoder(feats, mask_features, text)
    masks = torch.zeros(2, 32, 32)
    masks[0, :16] = 1
    masks[1, :, 8:20] = 1
    targets = [
        {"labels": torch.tensor([1, 3]), "masks": masks},
        {"labels": torch.tensor([4]), "masks": masks[:1]},
    ]
    criterion = SetCriterion(
        num_classes,
        HungarianMatcher(num_points=64),
        make_weight_dict(num_aux=3),
        num_points=64,
    )
    losses = criterion(out, targets)
    assert len(losses) == 3 * 4
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_ce_2", "loss_dice_0"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert decoder.query_feat.weight.grad is not None
