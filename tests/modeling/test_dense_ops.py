import math

import pytest
import torch
import torch.nn.functional as F

from clipself.modeling import dense_ops as ops


# ---------------------------------------------------------------- input checks
def test_check_image_size():
    assert ops.check_image_size(48, 64, 16) == (3, 4)
    with pytest.raises(ValueError, match="smaller than one"):
        ops.check_image_size(8, 64, 16)
    with pytest.raises(ValueError, match="not a multiple"):
        ops.check_image_size(50, 64, 16)


# ---------------------------------------------------------------- positional embeddings
def test_resize_pos_embed_identity_at_native_grid():
    pe = torch.randn(1 + 14 * 14, 32)
    assert ops.resize_abs_pos_embed(pe, (14, 14), (14, 14)) is pe


@pytest.mark.parametrize("lead", [(), (1,)])
def test_resize_pos_embed_bicubic_no_antialias(lead):
    torch.manual_seed(0)
    pe = torch.randn(*lead, 1 + 4 * 5, 8)
    out = ops.resize_abs_pos_embed(pe, (4, 5), (7, 3))
    assert out.shape == (*lead, 1 + 21, 8)
    flat = pe.reshape(1 + 20, 8)
    torch.testing.assert_close(out.reshape(22, 8)[0], flat[0])  # class slot kept
    grid = flat[1:].reshape(1, 4, 5, 8).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(7, 3), mode="bicubic", align_corners=False, antialias=False)
    torch.testing.assert_close(out.reshape(22, 8)[1:], ref.permute(0, 2, 3, 1).reshape(21, 8))
    # antialiasing would change the kernel even when upsampling (docs/dense_features.md §4.1)
    up = F.interpolate(grid, size=(8, 10), mode="bicubic", align_corners=False, antialias=True)
    mine = ops.resize_abs_pos_embed(pe, (4, 5), (8, 10)).reshape(81, 8)[1:]
    assert (mine - up.permute(0, 2, 3, 1).reshape(80, 8)).abs().max() > 1e-4


def test_resize_pos_embed_matches_timm_without_antialias():
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(0)
    pe = torch.randn(1, 1 + 14 * 14, 16)
    ref = resample_abs_pos_embed(pe, new_size=(64, 40), old_size=(14, 14), num_prefix_tokens=1,
                                 interpolation="bicubic", antialias=False)
    torch.testing.assert_close(ops.resize_abs_pos_embed(pe, (14, 14), (64, 40)), ref)


# ---------------------------------------------------------------- RoPE
def test_rope_table_square_matches_timm_and_authors_formula():
    from timm.layers import build_rotary_pos_embed
    from timm.layers.pos_embed_sincos import freq_bands

    table = ops.build_rope_table((14, 14), 64, ref_grid=(16, 16))
    sin, cos = build_rotary_pos_embed((14, 14), bands=freq_bands(16, 10000.0, step=1),
                                      in_pixels=False, ref_feat_shape=(16, 16))
    torch.testing.assert_close(table, torch.cat([sin, cos], -1))
    # the authors' VisionRotaryEmbeddingFast: t = arange(n) / n * 16, f_i = 10000^(-i/16)
    n = 14
    t = torch.arange(n, dtype=torch.float32) / n * 16
    f = 1.0 / 10000 ** (torch.arange(0, 32, 2)[:16].float() / 32)
    fr = (t[:, None] * f[None]).repeat_interleave(2, -1)  # (n, 32)
    ang = torch.cat([fr[:, None, :].expand(n, n, 32), fr[None, :, :].expand(n, n, 32)], -1)
    torch.testing.assert_close(table[:, 64:], ang.reshape(n * n, 64).cos())
    torch.testing.assert_close(table[:, :64], ang.reshape(n * n, 64).sin())


def test_rope_table_per_axis_non_square():
    from timm.layers import build_rotary_pos_embed
    from timm.layers.pos_embed_sincos import freq_bands

    h, w, d = 5, 9, 32
    table = ops.build_rope_table((h, w), d, ref_grid=(16, 16))
    assert table.shape == (h * w, 2 * d)
    sin, cos = build_rotary_pos_embed((h, w), bands=freq_bands(d // 4, 10000.0, step=1),
                                      in_pixels=False, ref_feat_shape=(16, 16))
    torch.testing.assert_close(table, torch.cat([sin, cos], -1))
    f = ops.rope_frequencies(d)
    ang = torch.atan2(table[:, :d], table[:, d:]).reshape(h, w, d)  # angles (small enough)
    r, c = 3, 7
    # first half of the channels follows the row coordinate r/h*16, the second the column c/w*16
    exp_row = (r / h * 16 * f).repeat_interleave(2)
    exp_col = (c / w * 16 * f).repeat_interleave(2)
    wrap = lambda a: torch.atan2(a.sin(), a.cos())  # noqa: E731
    torch.testing.assert_close(ang[r, c, : d // 2], wrap(exp_row), atol=1e-5, rtol=0)
    torch.testing.assert_close(ang[r, c, d // 2:], wrap(exp_col), atol=1e-5, rtol=0)
    # rows of the table do not depend on the column for the row half, and vice versa
    torch.testing.assert_close(ang[r, 0, : d // 2], ang[r, w - 1, : d // 2])
    torch.testing.assert_close(ang[0, c, d // 2:], ang[h - 1, c, d // 2:])


def test_rope_table_xy_indexing_pe_core():
    """PE-Core's RoPE ("xy", grid offset 1, reference 14x14): the first half of the channels
    follows the column, the second the row, each rescaled on its own axis (non-square too)."""
    h, w, d = 4, 6, 16
    table = ops.build_rope_table((h, w), d, ref_grid=(14, 14), grid_offset=1.0,
                                 grid_indexing="xy")
    assert table.shape == (h * w, 2 * d)
    f = ops.rope_frequencies(d)
    ang = torch.atan2(table[:, :d], table[:, d:]).reshape(h, w, d)
    wrap = lambda a: torch.atan2(a.sin(), a.cos())  # noqa: E731
    r, c = 2, 5
    exp_col = ((c + 1) / w * 14 * f).repeat_interleave(2)
    exp_row = ((r + 1) / h * 14 * f).repeat_interleave(2)
    torch.testing.assert_close(ang[r, c, : d // 2], wrap(exp_col), atol=1e-5, rtol=0)
    torch.testing.assert_close(ang[r, c, d // 2:], wrap(exp_row), atol=1e-5, rtol=0)
    # "ij" swaps the halves
    ij = ops.build_rope_table((h, w), d, ref_grid=(14, 14), grid_offset=1.0)
    assert not torch.allclose(ij, table)
    with pytest.raises(ValueError, match="grid_indexing"):
        ops.build_rope_table((h, w), d, grid_indexing="yx")


def test_apply_rope_half_layout_matches_timm():
    from timm.layers import apply_rot_embed_cat

    torch.manual_seed(0)
    x = torch.randn(1, 2, 12, 8)
    table = ops.build_rope_table((3, 4), 8, rotate_half=True)
    torch.testing.assert_close(ops.apply_rope(x, table, half=True),
                               apply_rot_embed_cat(x, table, half=True))
    torch.testing.assert_close(ops.apply_rope(x, table, half=True).norm(dim=-1), x.norm(dim=-1))


def test_attention_pool_value_is_what_each_token_contributes():
    """``f_t = W_o (W_v x_t + b_v) + b_o``; any attention-weighted mean of the values through the
    output projection equals the same mean of ``f_t`` (docs/dense_features.md §9)."""
    torch.manual_seed(0)
    x = torch.randn(2, 7, 6)  # (B, M, C)
    w_v, b_v, w_o, b_o = torch.randn(4, 6), torch.randn(4), torch.randn(5, 4), torch.randn(5)
    f = ops.attention_pool_value(x, w_v, b_v, w_o, b_o)
    assert f.shape == (2, 7, 5)
    torch.testing.assert_close(f[1, 3], w_o @ (w_v @ x[1, 3] + b_v) + b_o)
    a = torch.rand(2, 7).softmax(-1)  # attention weights of one query, summing to 1
    pooled = (a[..., None] * (x @ w_v.t() + b_v)).sum(1) @ w_o.t() + b_o
    torch.testing.assert_close(pooled, (a[..., None] * f).sum(1))
    assert ops.attention_pool_value(x, w_v, None, w_o, None).shape == (2, 7, 5)


def test_apply_rope_matches_timm():
    from timm.layers import apply_rot_embed_cat

    torch.manual_seed(0)
    x = torch.randn(2, 3, 20, 16)
    table = ops.build_rope_table((4, 5), 16)
    torch.testing.assert_close(ops.apply_rope(x, table), apply_rot_embed_cat(x, table))
    # rotations keep the norm of every channel pair
    torch.testing.assert_close(ops.apply_rope(x, table).norm(dim=-1), x.norm(dim=-1))


# ---------------------------------------------------------------- attention modes
def _softmax_attn(a, b, v, scale):
    return ((a @ b.transpose(-2, -1)) * scale).softmax(-1) @ v


@pytest.mark.parametrize("mode", ops.LAST_BLOCK_MODES)
def test_mode_attention_formulas(mode):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 8) for _ in range(3))
    s = 8 ** -0.5
    expected = {
        "v": v,
        "vanilla": _softmax_attn(q, k, v, s),
        "qq": _softmax_attn(q, q, v, s),
        "kk": _softmax_attn(k, k, v, s),
        "vv": _softmax_attn(v, v, v, s),
        "csa": _softmax_attn(q, q, v, s) + _softmax_attn(k, k, v, s),
        "all": (((q @ q.mT + k @ k.mT + v @ v.mT) / 3) * s).softmax(-1) @ v,
    }[mode]
    for impl in ("sdpa", "math"):
        torch.testing.assert_close(ops.mode_attention(q, k, v, mode, impl=impl), expected,
                                   atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        ops.mode_attention(q, k, v, "nope")


def test_gaussian_bias():
    bias = ops.gaussian_neighbour_bias((3, 4), std=1.0)
    assert bias.shape == (13, 13)
    assert bias[0].abs().sum() == 0 and bias[:, 0].abs().sum() == 0
    torch.testing.assert_close(bias[1:, 1:].diagonal(), torch.ones(12))
    assert math.isclose(bias[1, 2].item(), math.exp(-0.5), rel_tol=1e-6)  # neighbours 1 apart
    q, k, v = (torch.randn(1, 2, 13, 4) for _ in range(3))
    a = ops.mode_attention(q, k, v, "kk", bias=bias, impl="sdpa")
    b = ops.mode_attention(q, k, v, "kk", bias=bias, impl="math")
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- box pooling
def test_pool_whole_image_is_mean():
    torch.manual_seed(0)
    dense = torch.randn(2, 6, 5, 7)
    for stride in (16, 14, 3.5):
        boxes = [torch.tensor([[0.0, 0.0, 7 * stride, 5 * stride]])] * 2
        out = ops.pool_boxes(dense, boxes, stride)
        torch.testing.assert_close(out, dense.mean(dim=(2, 3)), atol=1e-6, rtol=1e-5)


def test_pool_boxes_matches_reference_loop():
    torch.manual_seed(0)
    dense = torch.randn(2, 4, 6, 8)
    stride = 3.5
    boxes = [
        torch.tensor([[1.0, 2.0, 9.5, 13.0], [0.0, 0.0, 3.0, 3.0], [-5.0, 4.0, 40.0, 30.0]]),
        torch.tensor([[10.2, 3.3, 17.9, 20.1]]),
    ]
    out = ops.pool_boxes(dense, boxes, stride)
    ref = ops.pool_boxes_reference(dense, boxes, stride)
    assert out.shape == (4, 4)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_pool_boxes_degenerate_and_empty():
    from detectron2.structures import Boxes

    torch.manual_seed(0)
    dense = torch.randn(2, 4, 4, 4)
    boxes = [
        torch.tensor([[8.0, 8.0, 8.0, 8.0], [100.0, 100.0, 200.0, 200.0], [30.0, 5.0, 10.0, 2.0]]),
        Boxes(torch.tensor([[-50.0, -50.0, -10.0, -10.0]])),
    ]
    out = ops.pool_boxes(dense, boxes, 16)
    assert out.shape == (4, 4) and torch.isfinite(out).all()
    # a zero-size box samples the map at its point; out-of-image boxes the nearest corner
    torch.testing.assert_close(out[1], dense[0, :, 3, 3])
    torch.testing.assert_close(out[3], dense[1, :, 0, 0])
    torch.testing.assert_close(out, ops.pool_boxes_reference(dense, boxes, 16), atol=1e-5, rtol=0)
    empty = [torch.zeros(0, 4), torch.zeros(0, 4)]
    assert ops.pool_boxes(dense, empty, 16).shape == (0, 4)
    assert ops.pool_boxes(dense, [torch.zeros(0, 4), boxes[0]], 16).shape == (3, 4)
    with pytest.raises(ValueError):
        ops.pool_boxes(dense, [boxes[0]], 16)


# ---------------------------------------------------------------- mask pooling
def test_pool_masks():
    torch.manual_seed(0)
    dense = torch.randn(2, 5, 3, 4)
    full = torch.ones(1, 3, 4, dtype=torch.bool)
    one = torch.zeros(2, 3, 4, dtype=torch.bool)
    one[0, 1, 2] = True
    one[1, 0, 0] = True
    soft = torch.rand(1, 3, 4)
    out = ops.pool_masks(dense, [torch.cat([full, full[:, :, :].logical_not()]), one])
    assert out.shape == (4, 5)
    torch.testing.assert_close(out[0], dense[0].mean(dim=(1, 2)))
    torch.testing.assert_close(out[1], torch.zeros(5))  # empty mask: zero vector, no NaN
    torch.testing.assert_close(out[2], dense[1, :, 1, 2])
    torch.testing.assert_close(out[3], dense[1, :, 0, 0])
    w = ops.pool_masks(dense[:1], [soft])
    torch.testing.assert_close(w[0], (dense[0] * soft[0]).sum((1, 2)) / soft.sum())
    assert ops.pool_masks(dense, [torch.zeros(0, 3, 4), torch.zeros(0, 3, 4)]).shape == (0, 5)
    with pytest.raises(ValueError, match="resize the masks"):
        ops.pool_masks(dense, [torch.ones(1, 6, 8), torch.ones(1, 3, 4)])
