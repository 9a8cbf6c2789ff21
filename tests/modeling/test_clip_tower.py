"""CLIPTower on tiny towers of every family (tests/modeling/tiny_towers.py): dense grids for
non-square inputs, the dense formula of each head type written naively, the last-block modes,
resizing that is the identity at the native grid, the CNN backbone contract, and bad input
(docs/dense_features.md §9)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from omegaconf import OmegaConf

from clipself.modeling import LAST_BLOCK_MODES, CLIPConvTower, CLIPTower, CLIPViT, TowerUnsupported
from clipself.modeling import dense_ops as ops
from clipself.modeling import pyramid_taps, tower_geometry
from clipself.modeling.backbone.towers.timm_relpos import relpos_mlp_bias

from tests.modeling.tiny_towers import CNN_FAMILIES, TINY, VIT_FAMILIES, randomize


def _tower(key, **kw):
    torch.manual_seed(0)
    m = CLIPTower(TINY[key], **kw)
    randomize(m.visual)
    return m.eval()


def _ln(x, mod):
    return F.layer_norm(x, mod.normalized_shape, mod.weight, mod.bias, mod.eps)


def _lin(x, mod):
    return x @ mod.weight.t() + (mod.bias if mod.bias is not None else 0)


def _l2_map(z, grid):
    z = z / z.norm(dim=-1, keepdim=True)
    return z.transpose(1, 2).reshape(z.shape[0], -1, *grid)


# ---------------------------------------------------------------- grids and sizes
@pytest.mark.parametrize("key", VIT_FAMILIES + CNN_FAMILIES)
def test_dense_grid_non_square(key):
    m = _tower(key)
    s = int(m.stride)
    assert isinstance(m, CLIPViT if key in VIT_FAMILIES else CLIPConvTower)
    x = torch.randn(2, 3, 5 * s, 3 * s)
    with torch.no_grad():
        d = m.dense_features(x)
        e = m.encode_image(x)
    assert d.shape == (2, m.embed_dim, 5, 3) and d.dtype == torch.float32
    torch.testing.assert_close(d.norm(dim=1), torch.ones(2, 5, 3))
    assert e.shape == (2, m.embed_dim)
    with pytest.raises(ValueError, match="multiple of the patch"):
        m.dense_features(torch.randn(1, 3, 5 * s + 1, 3 * s))


@pytest.mark.parametrize("key", ["openai", "siglip", "pe", "rn"])
def test_resizing_is_identity_at_native_grid(key):
    m = _tower(key)
    native = m.pretrain_grid
    param = m.visual.attnpool.positional_embedding if key == "rn" else m._pos_param()[0]
    with torch.no_grad():
        assert m.pos_embed_for(native) is param
        first = m.pos_embed_for((5, 3))
        assert m.pos_embed_for((5, 3)) is m.pos_embed_for((5, 3))  # cached per grid
        torch.testing.assert_close(first, m.pos_embed_for((5, 3)))
    if key == "pe":  # PE-Core RoPE: "xy" indexing, grid offset 1, reference grid
        rope = m.visual.trunk.rope
        torch.testing.assert_close(m.rope_for(native, torch.device("cpu")), rope.get_embed())
        spec = m._rope_spec
        assert (spec.grid_indexing, spec.grid_offset) == ("xy", 1.0)
        torch.testing.assert_close(
            m.rope_for((5, 3), torch.device("cpu")),
            ops.build_rope_table((5, 3), spec.head_dim, ref_grid=spec.ref_grid,
                                 grid_offset=1.0, grid_indexing="xy"))


def test_relpos_bias_rebuilt_per_grid():
    m = _tower("relpos")
    rel = m.visual.trunk.blocks[0].attn.rel_pos
    torch.testing.assert_close(relpos_mlp_bias(rel, m.pretrain_grid), rel.get_bias())
    other = copy.deepcopy(rel)
    other.set_window_size((5, 3))  # timm's own rebuild of the same MLP
    bias = relpos_mlp_bias(rel, (5, 3))
    assert bias.shape == (1, 2, 1 + 15, 1 + 15)
    torch.testing.assert_close(bias, other.get_bias())


# ---------------------------------------------------------------- dense formulas, naively
def test_siglip_value_path_through_map_head_naive():
    """No class token: the last block's value path, the final norm, then the MAP head's value
    path per token, ``a_t = proj(W_v z_t + b_v)``, ``f_t = a_t + mlp(norm(a_t))``."""
    m = _tower("siglip")
    tr = m.visual.trunk
    x = torch.randn(2, 3, 32, 32)  # native size: timm's own forward
    with torch.no_grad():
        t = tr.forward_intermediates(x, indices=[0], intermediates_only=True,
                                     output_fmt="NLC")[0]  # after blocks 0..L-2 (timm's own)
        blk = tr.blocks[-1]
        C = t.shape[-1]
        v = _ln(t, blk.norm1) @ blk.attn.qkv.weight[2 * C:].t() + blk.attn.qkv.bias[2 * C:]
        t = t + _lin(v, blk.attn.proj)
        t = t + blk.mlp(_ln(t, blk.norm2))
        z = _ln(t, tr.norm)
        pool = tr.attn_pool
        a = _lin(z @ pool.kv.weight[C:].t() + pool.kv.bias[C:], pool.proj)
        f = a + pool.mlp(_ln(a, pool.norm))
        torch.testing.assert_close(m.dense_features(x), _l2_map(f, (4, 4)), atol=1e-5,
                                   rtol=1e-5)


@pytest.mark.parametrize("key", ["siglip", "pe"])
def test_vanilla_dense_is_head_on_timm_tokens(key):
    """With the unmodified last block, the dense map is the per-location head on timm's own final
    tokens (``forward_features``, final norm included)."""
    m = _tower(key, last_block_mode="vanilla")
    tr = m.visual.trunk
    x = torch.randn(1, 3, 32, 32)  # native size: timm's own positions
    with torch.no_grad():
        tok = tr.forward_features(x)[:, tr.num_prefix_tokens:]
        pool = tr.attn_pool
        C = tok.shape[-1]
        a = _lin(tok @ pool.kv.weight[C:].t() + pool.kv.bias[C:], pool.proj)
        f = m.visual.head(tr.head(tr.fc_norm(a + pool.mlp(_ln(a, pool.norm)))))
        torch.testing.assert_close(m.dense_features(x), _l2_map(f, (4, 4)), atol=1e-5,
                                   rtol=1e-5)


def test_coca_pooler_value_path_naive():
    """CoCa: ``f_t = ln_post(W_o (W_v ln_k(x_t) + b_v) + b_o) @ proj`` on the final tokens."""
    m = _tower("coca", last_block_mode="vanilla")
    vis = m.visual
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tok = vis.forward_intermediates(x, indices=[1], intermediates_only=True,
                                        output_fmt="NLC")["image_intermediates"][0]
        mha = vis.attn_pool.attn
        E = mha.embed_dim
        v = _ln(tok, vis.attn_pool.ln_k) @ mha.v_proj_weight.t() + mha.in_proj_bias[2 * E:]
        f = _ln(_lin(v, mha.out_proj), vis.ln_post) @ vis.proj
        torch.testing.assert_close(m.dense_features(x), _l2_map(f, (4, 4)), atol=1e-5,
                                   rtol=1e-5)
        torch.testing.assert_close(m.encode_image(x), vis(x)[0], atol=1e-5, rtol=1e-5)


def test_modified_resnet_maskclip_value_path():
    """``f_t = c_proj(v_proj(x_t + P_t))``; the pooled embedding is the mean token's multi-head
    attention over the same values (written out here, and open_clip's own)."""
    m = _tower("rn")
    v = m.visual
    ap = v.attnpool
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        fmap = v.layer4(v.layer3(v.layer2(v.layer1(v.stem(x)))))  # (B, C, 2, 2)
        tok = fmap.flatten(2).transpose(1, 2)
        z = torch.cat([tok.mean(1, keepdim=True), tok], 1) + ap.positional_embedding
        f = _lin(_lin(z, ap.v_proj), ap.c_proj)  # (B, 1 + 4, D)
        torch.testing.assert_close(m.dense_features(x), _l2_map(f[:, 1:], (2, 2)), atol=1e-5,
                                   rtol=1e-5)
        H = ap.num_heads
        q = _lin(z[:, :1], ap.q_proj).reshape(2, 1, H, -1).transpose(1, 2)
        k = _lin(z, ap.k_proj).reshape(2, 5, H, -1).transpose(1, 2)
        a = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1)  # (B, H, 1, 5)
        vz = _lin(z, ap.v_proj).reshape(2, 5, H, -1).transpose(1, 2)  # per-head values
        pooled = _lin((a @ vz).transpose(1, 2).reshape(2, -1), ap.c_proj)
        torch.testing.assert_close(m.encode_image(x), pooled, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(m.encode_image(x), v(x), atol=1e-5, rtol=1e-5)


def test_convnext_head_per_location():
    m = _tower("convnext")
    tr = m.visual.trunk
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        fmap = tr.forward_features(x).permute(0, 2, 3, 1)  # (B, 2, 3, C)
        f = m.visual.head(_ln(fmap, tr.head.norm)).flatten(1, 2)
        torch.testing.assert_close(m.dense_features(x), _l2_map(f, (2, 3)), atol=1e-5,
                                   rtol=1e-5)
        pooled = m.visual.head(_ln(tr.forward_features(x).mean((2, 3)), tr.head.norm))
        torch.testing.assert_close(m.encode_image(x), pooled, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- last-block modes
@pytest.mark.parametrize("key", ["siglip", "pe", "eva02e", "coca", "relpos", "rn"])
@pytest.mark.parametrize("mode", LAST_BLOCK_MODES)
def test_last_block_modes_sdpa_equals_materialised(key, mode):
    m = _tower(key, last_block_mode=mode, gaussian_std=2.0 if mode == "kk" else None)
    s = int(m.stride)
    x = torch.randn(1, 3, 3 * s if key == "rn" else 5 * s, 3 * s)
    with torch.no_grad():
        fast = m.dense_features(x)
        m.attn_impl = "math"
        slow = m.dense_features(x)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-4)
    if mode != "v":
        ref = _tower(key)
        with torch.no_grad():
            assert (ref.dense_features(x) - fast).abs().max() > 1e-4


@pytest.mark.parametrize("key", ["siglip", "eva02e"])
def test_drop_residual_and_ffn(key):
    m = _tower(key, drop_residual=True, drop_ffn=True)
    ref = _tower(key)
    x = torch.randn(1, 3, 40, 24)
    with torch.no_grad():
        assert (m.dense_features(x) - ref.dense_features(x)).abs().max() > 1e-4


# ---------------------------------------------------------------- CNN backbone contract
def test_conv_tower_backbone_taps_and_freezing():
    m = _tower("rn", out_indices=[1, 3], out_dense=True)
    shapes = m.output_shape()
    assert list(shapes) == ["stage1", "stage3", "clip_dense"]
    assert shapes["stage1"].stride == 8 and shapes["stage3"].channels == 16 * 32
    assert m.size_divisibility == 32 and m.strides_float["clip_dense"] == 32.0
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        out = m(x)
        assert out["stage1"].shape == (1, 16 * 8, 12, 8)
        torch.testing.assert_close(out["clip_dense"], m.dense_features(x))

    cnx = CLIPTower(TINY["convnext"], freeze="clipself")
    trainable = {n for n, p in cnx.named_parameters() if p.requires_grad}
    assert trainable and all(".stages." in n for n in trainable)
    assert len(cnx.lock_groups()) == 1 + 4
    rn = CLIPTower(TINY["rn"], freeze="frozen").train()
    assert not rn.training and not any(p.requires_grad for p in rn.parameters())
    student = CLIPTower(TINY["rn"], freeze="clipself").train()
    student.dense_features(torch.randn(1, 3, 64, 64)).sum().backward()
    assert student.visual.layer4[0].conv1.weight.grad is not None
    assert student.visual.attnpool.v_proj.weight.grad is None  # the head stays frozen


def test_conv_tower_autocast_returns_float32():
    m = _tower("convnext", autocast_dtype="bf16")
    with torch.no_grad():
        assert m.dense_features(torch.randn(1, 3, 64, 64)).dtype == torch.float32
        assert m.encode_image(torch.randn(1, 3, 64, 64)).dtype == torch.float32


def test_lazy_config_instantiate():
    cfg = OmegaConf.create({"net": L(CLIPTower)(model_name=TINY["siglip"], out_indices=[0, 1])})
    net = instantiate(cfg.net)
    assert isinstance(net, CLIPViT) and net.family == "timm_vit" and net.out_indices == [0, 1]


# ---------------------------------------------------------------- bad input
def test_unknown_name_lists_closest_open_clip_names():
    with pytest.raises(ValueError, match="closest open_clip names: ViT-B-16-SigLIP2"):
        CLIPTower("ViT-B16-SigLIP2")
    with pytest.raises(ValueError, match="add_model_config"):
        CLIPTower("no-such-model-at-all")


def test_wrong_wrapper_and_options():
    with pytest.raises(TowerUnsupported, match="CLIPTower"):
        CLIPViT(TINY["rn"])
    with pytest.raises(TowerUnsupported, match="transformer"):
        CLIPConvTower(TINY["siglip"])
    with pytest.raises(ValueError, match="no attention"):
        CLIPTower(TINY["convnext"], last_block_mode="qq")
    with pytest.raises(ValueError, match="no residual"):
        CLIPTower(TINY["rn"], drop_residual=True)


def test_swin_takes_only_its_native_size():
    with torch.device("meta"):
        m = CLIPTower("swin_base_patch4_window7_224")
        assert m.dense_features(torch.empty(1, 3, 224, 224)).shape == (1, 640, 7, 7)
        with pytest.raises(ValueError, match="native input size 224x224"):
            m.dense_features(torch.empty(1, 3, 224, 256))


def test_adapter_follows_copies():
    """The adapter holds a reference to ``visual``: a deep copy must run its own weights."""
    m = _tower("siglip")
    c = copy.deepcopy(m)
    assert c.tower.visual is c.visual and c.tower is not m.tower
    with torch.no_grad():
        for p in c.visual.parameters():
            p.mul_(0.5)
        x = torch.randn(1, 3, 32, 32)
        assert (c.dense_features(x) - m.dense_features(x)).abs().max() > 1e-3


def test_tower_geometry_and_pyramid_taps_follow_the_config():
    """The paper's taps for 12 and 24 blocks; geometry read from open_clip configs (no weights)."""
    assert pyramid_taps(12) == [3, 5, 7, 11] and pyramid_taps(24) == [6, 10, 14, 23]
    for depth in range(4, 49):
        taps = pyramid_taps(depth)
        assert len(taps) == 4 and taps == sorted(set(taps)) and taps[-1] == depth - 1
    with pytest.raises(ValueError, match="at least 4 blocks"):
        pyramid_taps(3)
    g = tower_geometry("ViT-B-16-SigLIP2-512")
    assert (g.kind, g.family, g.stride, g.width, g.depth, g.embed_dim, g.image_size) == (
        "transformer", "timm_vit", 16.0, 768, 12, 768, (512, 512))
    g = tower_geometry("PE-Core-L-14-336")
    assert (g.family, g.stride, g.depth, g.embed_dim, g.image_size) == (
        "eva", 14.0, 24, 1024, (336, 336))
    g = tower_geometry("RN50")
    assert (g.kind, g.stride, g.width, g.embed_dim) == ("conv", 32.0, 2048, 1024)
