"""Cost aggregation and the upsampling decoder: attention maths, shapes, class equivariance."""
import pytest
import torch
import torch.nn.functional as F

from clipself.modeling.catseg import (
    Aggregator,
    ClassAggregation,
    CostEmbed,
    UpsamplingDecoder,
    guided_linear,
    linear_attention,
    shifted_window_mask,
    window_attention,
)


@torch.no_grad()
def _randomize(module, std=0.2, seed=0):
    """Perturb every parameter (zero-initialised padding tokens included)."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.add_(torch.randn(p.shape, generator=g) * std)
    return module


def _aggregator(**kw):
    torch.manual_seed(0)
    args = dict(text_dim=12, prompt_channels=3, hidden_dim=16, appearance_guidance_dim=8,
                text_guidance_dim=8, num_layers=1, num_heads=2, window_size=4, class_budget=6)
    args.update(kw)
    return _randomize(Aggregator(**args))


# ---------------------------------------------------------------- pure functions
@pytest.mark.parametrize("size,window,shift", [((5, 7), 3, 1), ((6, 6), 3, 0), ((5, 7), 4, 2),
                                               ((4, 8), 4, 2)])
def test_window_attention_equals_full_attention_with_a_hand_built_mask(size, window, shift):
    """Shifted windows = windows whose borders are offset by ``shift`` (no wrap-around)."""
    torch.manual_seed(0)
    H, W = size
    q, k, v = (torch.randn(2, 3, H, W, 4) for _ in range(3))
    out = window_attention(q, k, v, window, shift)
    r = torch.arange(H).repeat_interleave(W)
    c = torch.arange(W).repeat(H)
    gr = torch.div(r - shift, window, rounding_mode="floor")
    gc = torch.div(c - shift, window, rounding_mode="floor")
    mask = (gr[:, None] == gr[None]) & (gc[:, None] == gc[None])  # (HW, HW)
    ref = F.scaled_dot_product_attention(q.flatten(2, 3), k.flatten(2, 3), v.flatten(2, 3),
                                         attn_mask=mask)
    torch.testing.assert_close(out.flatten(2, 3), ref, atol=1e-5, rtol=1e-5)


def test_shifted_window_mask_tiny_case():
    # 4x4 grid, window 2, shift 1: the first rolled window holds original rows/cols {1, 2}
    m = shifted_window_mask(4, 2, 1)
    assert m.shape == (4, 4, 4) and bool(m[0].all())
    # the last window gathers rows {3, 0} x cols {3, 0}: four separate regions
    assert torch.equal(m[3], torch.eye(4, dtype=torch.bool))
    assert shifted_window_mask(4, 2, 0) is None
    # padding: 3x3 grid, window 2 -> padded keys are never attended by real tokens
    m = shifted_window_mask(3, 2, 0)
    assert m[3].tolist()[0] == [True, False, False, False]


def test_linear_attention_matches_the_direct_formula():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 5, 3, 4) for _ in range(3))  # (N, T, nH, d)
    out = linear_attention(q, k, v)
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    for n in range(2):
        for i in range(5):
            for h in range(3):
                wts = torch.stack([fq[n, i, h] @ fk[n, j, h] for j in range(5)])
                want = (wts[:, None] * v[n, :, h]).sum(0) / (wts.sum() + 1e-6)
                torch.testing.assert_close(out[n, i, h], want, atol=1e-5, rtol=1e-5)


def test_guided_linear_equals_linear_on_the_concatenation():
    torch.manual_seed(0)
    lin = torch.nn.Linear(6 + 3, 5)
    x, g = torch.randn(2, 4, 7, 6), torch.randn(2, 1, 7, 3)  # guidance shared along dim 1
    want = lin(torch.cat([x, g.expand(2, 4, 7, 3)], dim=-1))
    torch.testing.assert_close(guided_linear(lin, x, g), want)


# ---------------------------------------------------------------- modules
def test_cost_embed_is_a_conv_per_class():
    torch.manual_seed(0)
    emb = CostEmbed(prompt_channels=3, hidden_dim=4)
    cost = torch.randn(2, 3, 5, 6, 7)
    out = emb(cost)
    assert out.shape == (2, 4, 5, 6, 7)
    torch.testing.assert_close(out[1, :, 2], emb.conv(cost[1, :, 2][None])[0])


@pytest.mark.parametrize("training", [True, False])
def test_aggregator_and_decoder_shapes_non_square(training):
    agg = _aggregator().train(training)
    dec = UpsamplingDecoder(hidden_dim=16, decoder_dims=(16, 8), guidance_in_channels=24,
                            guidance_up_channels=(8, 8), guidance_dims=(4, 2))
    B, T, h, w = 2, 5, 5, 7
    cost = torch.randn(B, 3, T, h, w)
    x = agg(cost, torch.randn(B, 12, h, w), torch.randn(T, 3, 12))
    assert x.shape == (B, 16, T, h, w)
    logits = dec(x, [torch.randn(B, 24, h, w), torch.randn(B, 24, h, w)])
    assert logits.shape == (B, T, 4 * h, 4 * w) and torch.isfinite(logits).all()
    # per-image text (after class selection) works the same way
    x2 = agg(cost, torch.randn(B, 12, h, w), torch.randn(B, T, 3, 12))
    assert x2.shape == x.shape


def test_decoder_without_guidance():
    dec = UpsamplingDecoder(hidden_dim=8, decoder_dims=(8, 4), guidance_up_channels=(0, 0),
                            guidance_dims=(0, 0))
    assert dec(torch.randn(1, 8, 3, 2, 5)).shape == (1, 3, 8, 20)


def test_aggregator_is_permutation_equivariant_over_classes():
    agg = _aggregator().eval()
    B, T, h, w = 2, 5, 4, 6
    torch.manual_seed(1)
    cost, dense, text = torch.randn(B, 3, T, h, w), torch.randn(B, 12, h, w), torch.randn(T, 3, 12)
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        out = agg(cost, dense, text)
        out_perm = agg(cost[:, :, perm], dense, text[perm])
    torch.testing.assert_close(out_perm, out[:, :, perm], atol=1e-5, rtol=1e-5)


def test_class_aggregation_padding_and_pooling():
    torch.manual_seed(0)
    x, g = torch.randn(2, 8, 3, 5, 7), torch.randn(2, 3, 4)
    padded = _randomize(ClassAggregation(8, 4, num_heads=2, class_budget=6)).eval()
    plain = ClassAggregation(8, 4, num_heads=2, class_budget=0).eval()
    plain.load_state_dict({k: v for k, v in padded.state_dict().items() if "pad" not in k})
    with torch.no_grad():
        a, b = padded(x, g), plain(x, g)
    assert a.shape == b.shape == x.shape
    assert not torch.allclose(a, b)  # learnable padding tokens take part in the attention
    # more classes than the budget: no padding, same as without padding tokens
    x9, g9 = torch.randn(1, 8, 9, 5, 7), torch.randn(1, 9, 4)
    with torch.no_grad():
        torch.testing.assert_close(padded(x9, g9), plain(x9, g9))
    # pooling: 2 in training (odd sizes pooled with ceil mode), 1 at test, both settable
    padded.train()
    assert padded(x, g).shape == x.shape
    padded.eval()
    with torch.no_grad():
        padded.test_pooling_size = 2
        pooled = padded(x, g)
        padded.test_pooling_size = 1
    assert not torch.allclose(pooled, a)


def test_set_pooling_size_reaches_every_layer():
    agg = _aggregator(num_layers=2)
    agg.set_pooling_size(train=3, test=2)
    assert [(lyr.classes.pooling_size, lyr.classes.test_pooling_size) for lyr in agg.layers] == [
        (3, 2), (3, 2)]
    with pytest.raises(ValueError, match="templates"):
        agg(torch.randn(1, 2, 3, 4, 4), torch.randn(1, 12, 4, 4), torch.randn(3, 2, 12))
