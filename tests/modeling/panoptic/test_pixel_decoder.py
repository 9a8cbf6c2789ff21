import math

import pytest
import torch
from detectron2.layers import ShapeSpec

from clipself.modeling.panoptic import MSDeformAttn, MSDeformAttnPixelDecoder, ms_deform_attn_core
from clipself.modeling.panoptic.ms_deform_attn import (
    deform_sampling_locations,
    sampling_offset_bias,
)
from clipself.modeling.panoptic.pixel_decoder import (
    encoder_reference_points,
    position_embedding_sine,
)


# ---------------------------------------------------------------- deformable attention core
def _reference_core(value, shapes, locations, weights):
    """Slow loop version: hand-written bilinear sampling, zero padding, pixel-centre grid."""
    n_batch, _, n_heads, dim = value.shape
    _, n_queries, _, n_levels, n_points, _ = locations.shape
    starts = [0]
    for h, w in shapes[:-1]:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(n_batch, n_queries, n_heads * dim, dtype=value.dtype)
    for n in range(n_batch):
        for q in range(n_queries):
            for m in range(n_heads):
                acc = torch.zeros(dim, dtype=value.dtype)
                for lvl, (h, w) in enumerate(shapes):
                    level = value[n, starts[lvl] : starts[lvl] + h * w, m].reshape(h, w, dim)
                    for p in range(n_points):
                        x = locations[n, q, m, lvl, p, 0].item() * w - 0.5
                        y = locations[n, q, m, lvl, p, 1].item() * h - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        dx, dy = x - x0, y - y0
                        sample = torch.zeros(dim, dtype=value.dtype)
                        for yy, xx, wgt in (
                            (y0, x0, (1 - dy) * (1 - dx)),
                            (y0, x0 + 1, (1 - dy) * dx),
                            (y0 + 1, x0, dy * (1 - dx)),
                            (y0 + 1, x0 + 1, dy * dx),
                        ):
                            if 0 <= yy < h and 0 <= xx < w:
                                sample += wgt * level[yy, xx]
                        acc += weights[n, q, m, lvl, p] * sample
                out[n, q, m * dim : (m + 1) * dim] = acc
    return out


def test_core_matches_slow_reference():
    torch.manual_seed(0)
    shapes = [(3, 4), (2, 3)]
    n, lq, m, d, p = 2, 3, 2, 3, 2
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, d, dtype=torch.float64)
    # include locations outside [0, 1] to exercise the zero padding
    locations = torch.rand(n, lq, m, len(shapes), p, 2, dtype=torch.float64) * 1.4 - 0.2
    weights = torch.rand(n, lq, m, len(shapes) * p, dtype=torch.float64).softmax(-1)
    weights = weights.view(n, lq, m, len(shapes), p)
    out = ms_deform_attn_core(value, torch.tensor(shapes), locations, weights)
    assert out.shape == (n, lq, m * d)
    ref = _reference_core(value, shapes, locations, weights)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_core_at_pixel_centres_returns_values():
    torch.manual_seed(0)
    shapes = torch.tensor([(3, 5), (2, 2)])
    h, w = 3, 5
    value = torch.randn(1, 15 + 4, 2, 4)
    # one query per pixel of level 0, each head samples its pixel centre (one point, level 0)
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    centres = torch.stack([(jj.flatten() + 0.5) / w, (ii.flatten() + 0.5) / h], dim=-1)
    locations = centres.view(1, h * w, 1, 1, 1, 2).expand(1, h * w, 2, 2, 1, 2).clone()
    weights = torch.zeros(1, h * w, 2, 2, 1)
    weights[..., 0, 0] = 1.0
    out = ms_deform_attn_core(value, shapes, locations, weights)
    torch.testing.assert_close(out, value[0, : h * w].reshape(1, h * w, 8))


def test_core_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        ms_deform_attn_core(
            torch.zeros(1, 10, 1, 2),
            [(3, 3)],
            torch.zeros(1, 1, 1, 1, 1, 2),
            torch.ones(1, 1, 1, 1, 1),
        )


def test_sampling_locations_normalised_by_level_size():
    ref = torch.full((1, 1, 2, 2), 0.5)
    offsets = torch.zeros(1, 1, 1, 2, 1, 2)
    offsets[..., 0] = 1.0  # one pixel right
    shapes = torch.tensor([(4, 8), (2, 3)])
    loc = deform_sampling_locations(ref, offsets, shapes)
    torch.testing.assert_close(
        loc[0, 0, 0, :, 0], torch.tensor([[0.5 + 1 / 8, 0.5], [0.5 + 1 / 3, 0.5]])
    )


def test_sampling_offset_bias_directions():
    bias = sampling_offset_bias(4, 2, 3)  # heads at 0, 90, 180, 270 degrees
    assert bias.shape == (4, 2, 3, 2)
    expected = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    torch.testing.assert_close(bias[:, 1, 2], 3 * expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(bias[:, 0], bias[:, 1])
    assert bias.abs().amax(-1)[:, 0].tolist() == [[1.0, 2.0, 3.0]] * 4


# ---------------------------------------------------------------- MSDeformAttn module
def _inputs(n=2, c=16, shapes=((4, 6), (2, 3)), lq=5):
    spatial = torch.tensor(shapes)
    s = int(spatial.prod(1).sum())
    start = torch.cat([spatial.new_zeros(1), spatial.prod(1).cumsum(0)[:-1]])
    return (
        torch.randn(n, lq, c),
        torch.rand(n, lq, len(shapes), 2),
        torch.randn(n, s, c),
        spatial,
        start,
    )


def test_msdeformattn_shapes_backward_and_init():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=3)
    assert attn.attention_weights.weight.abs().sum() == 0
    assert attn.sampling_offsets.weight.abs().sum() == 0
    query, ref, src, shapes, start = _inputs()
    query.requires_grad_(True)
    src.requires_grad_(True)
    out = attn(query, ref, src, shapes, start)
    assert out.shape == (2, 5, 16)
    out.square().sum().backward()
    assert query.grad is not None and src.grad is not None
    assert all(p.grad is not None for p in attn.parameters())
    assert attn.sampling_offsets.weight.grad.abs().sum() > 0


def test_msdeformattn_padding_mask_ignores_padded_values():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=3)
    query, ref, src, shapes, start = _inputs()
    mask = torch.rand(src.shape[:2]) < 0.4
    out = attn(query, ref, src, shapes, start, mask)
    src2 = src.masked_fill(mask[..., None], 100.0)
    torch.testing.assert_close(attn(query, ref, src2, shapes, start, mask), out)
    # everything masked: only the output projection bias remains
    full = torch.ones_like(mask)
    nn_bias = attn.output_proj.bias.expand_as(out)
    torch.testing.assert_close(attn(query, ref, src, shapes, start, full), nn_bias)


# ---------------------------------------------------------------- positional encoding
def test_position_embedding_sine_values():
    pos = position_embedding_sine((2, 4), num_pos_feats=4)
    assert pos.shape == (1, 8, 2, 4)
    assert pos.abs().max() <= 1.0
    # row 0: y = 1/2 * 2pi = pi; col 0: x = 1/4 * 2pi = pi/2; dim_t = [1, 1, 100, 100]
    expected = [0.0, -1.0, math.sin(math.pi / 100), math.cos(math.pi / 100), 1.0, 0.0]
    torch.testing.assert_close(pos[0, :6, 0, 0], torch.tensor(expected), atol=1e-5, rtol=0)
    # a shape with batch equals an all-valid mask
    mask = torch.zeros(3, 2, 4, dtype=torch.bool)
    torch.testing.assert_close(position_embedding_sine(mask, 4), pos.expand(3, -1, -1, -1))


def test_position_embedding_sine_mask_normalises_over_valid_area():
    mask = torch.zeros(1, 2, 4, dtype=torch.bool)
    mask[..., 2:] = True  # right half padded
    pos = position_embedding_sine(mask, num_pos_feats=4)
    # last valid column: x = 2pi -> sin 0, cos 1
    torch.testing.assert_close(
        pos[0, 4:6, :, 1], torch.tensor([[0.0, 0.0], [1.0, 1.0]]), atol=1e-5, rtol=0
    )
    unnorm = position_embedding_sine((2, 4), 4, normalize=False)
    torch.testing.assert_close(unnorm[0, 4, 0], torch.sin(torch.arange(1.0, 5.0)))


def test_encoder_reference_points_are_pixel_centres():
    ref = encoder_reference_points(torch.tensor([(2, 4), (1, 2)]))
    assert ref.shape == (1, 10, 2, 2)
    torch.testing.assert_close(ref[0, 0, 0], torch.tensor([0.125, 0.25]))
    torch.testing.assert_close(ref[0, 7, 1], torch.tensor([0.875, 0.75]))
    torch.testing.assert_close(ref[0, 9, 0], torch.tensor([0.75, 0.5]))
    torch.testing.assert_close(ref[:, :, 0], ref[:, :, 1])  # valid ratios 1: same on all levels


# ---------------------------------------------------------------- pixel decoder
STRIDES = {"res2": 3.5, "res3": 7, "res4": 14, "res5": 28}
CHANNELS = {"res2": 8, "res3": 12, "res4": 16, "res5": 20}


def _decoder(**kwargs):
    shapes = {k: ShapeSpec(channels=CHANNELS[k], stride=s) for k, s in STRIDES.items()}
    cfg = dict(
        conv_dim=32,
        mask_dim=24,
        transformer_nheads=4,
        transformer_dim_feedforward=64,
        transformer_enc_layers=2,
        common_stride=4,
    )
    cfg.update(kwargs)
    return MSDeformAttnPixelDecoder(shapes, **cfg)


@pytest.mark.parametrize(
    "sizes",
    [
        {"res2": (32, 32), "res3": (16, 16), "res4": (8, 8), "res5": (4, 4)},
        {"res2": (32, 24), "res3": (16, 12), "res4": (8, 6), "res5": (4, 3)},
        {"res2": (18, 26), "res3": (9, 13), "res4": (5, 7), "res5": (3, 4)},  # odd sizes
    ],
)
def test_pixel_decoder_shapes_and_gradients(sizes):
    torch.manual_seed(0)
    decoder = _decoder()
    assert decoder.transformer_in_features == ["res5", "res4", "res3"]
    assert decoder.fpn_in_features == ["res2"]
    feats = {k: torch.randn(2, CHANNELS[k], *hw, requires_grad=True) for k, hw in sizes.items()}
    mask_features, encoder_features, multi_scale = decoder.forward_features(feats)
    assert mask_features.shape == (2, 24, *sizes["res2"])
    assert encoder_features.shape == (2, 32, *sizes["res5"])
    assert [tuple(x.shape) for x in multi_scale] == [
        (2, 32, *sizes[k]) for k in ("res5", "res4", "res3")
    ]
    loss = mask_features.square().mean() + sum(x.square().mean() for x in multi_scale)
    loss.backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats.values())
    missing = [n for n, p in decoder.named_parameters() if p.grad is None]
    assert not missing


def test_pixel_decoder_fp32_under_autocast_and_nearest():
    torch.manual_seed(0)
    decoder = _decoder(fpn_interpolation="nearest", transformer_enc_layers=1)
    sides = {"res2": 16, "res3": 8, "res4": 4, "res5": 2}
    feats = {k: torch.randn(1, CHANNELS[k], n, n) for k, n in sides.items()}
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        mask_features, _, multi_scale = decoder(feats)
    assert mask_features.dtype == torch.float32
    assert all(x.dtype == torch.float32 for x in multi_scale)


def test_pixel_decoder_needs_enough_fine_levels():
    shapes = {
        k: ShapeSpec(channels=CHANNELS[k], stride=STRIDES[k]) for k in ("res3", "res4", "res5")
    }
    with pytest.raises(ValueError, match="finer features"):
        MSDeformAttnPixelDecoder(shapes, conv_dim=32, mask_dim=32, transformer_enc_layers=1)
    decoder = MSDeformAttnPixelDecoder(
        shapes, conv_dim=32, mask_dim=32, transformer_enc_layers=1, common_stride=8
    )
    assert decoder.fpn_in_features == []
