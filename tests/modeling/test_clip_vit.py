import copy
import io
import json
import os
import runpy
from contextlib import redirect_stdout

import pytest
import torch
import torch.nn.functional as F

from clipself.modeling import LAST_BLOCK_MODES, CLIPViT
from clipself.modeling import dense_ops as ops

TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
# OpenAI-style open_clip ViT: 32 px, patch 8 (4x4 grid), width 64, 3 blocks, 2 heads
VIT = {"name": "tiny-vit", "embed_dim": 32, "text_cfg": TEXT, "vision_cfg": {
    "image_size": 32, "patch_size": 8, "width": 64, "layers": 3, "head_width": 32}}
# EVA02-CLIP-style timm trunk (separate q/k/v, q/v bias, SwiGLU + norm, inner attn LN, RoPE
# with reference grid 16x16), shrunk through timm kwargs
EVA = {"name": "tiny-eva", "embed_dim": 32, "text_cfg": TEXT, "vision_cfg": {
    "image_size": 32, "timm_model_name": "eva02_base_patch16_clip_224", "timm_pool": "token",
    "timm_proj": None,
    "timm_model_kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 3,
                          "num_heads": 2}}}


@torch.no_grad()
def _randomize(module, std=0.05, seed=0):
    """Perturb every parameter so that zero biases / unit norms cannot hide mistakes."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.add_(torch.randn(p.shape, generator=g) * std)
    return module


def _model(cfg, **kw):
    torch.manual_seed(0)
    m = CLIPViT(cfg, **kw)
    _randomize(m.visual)
    return m.eval()


def _ln(x, mod):
    return F.layer_norm(x, mod.normalized_shape, mod.weight, mod.bias, mod.eps)


def _lin(x, mod):
    return x @ mod.weight.t() + (mod.bias if mod.bias is not None else 0)


def _l2_map(z, grid):
    z = z / z.norm(dim=-1, keepdim=True)
    return z.transpose(1, 2).reshape(z.shape[0], -1, *grid)


# ---------------------------------------------------------------- equality with open_clip / timm
def test_encode_image_equals_open_clip_vit(tmp_path):
    import open_clip

    torch.manual_seed(0)
    clip = open_clip.model.CLIP(embed_dim=32, vision_cfg=VIT["vision_cfg"], text_cfg=TEXT)
    _randomize(clip).eval()
    path = tmp_path / "clip.pt"
    torch.save(clip.state_dict(), path)  # a full open_clip CLIP state dict (visual + text)
    m = CLIPViT(VIT, pretrained=str(path)).eval()
    assert m.load_report.ok and m.load_report.layout == "open_clip_vit"
    assert "token_embedding.weight" in m.load_report.ignored
    assert set(m.state_dict()) <= set(clip.state_dict())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = clip.encode_image(x)
        torch.testing.assert_close(m.encode_image(x), ref, atol=1e-5, rtol=1e-5)
        # vanilla last block: dense tokens = open_clip's own final tokens through ln_post/proj
        m.last_block = m.last_block._replace(mode="vanilla")
        tok = clip.visual.forward_intermediates(x, indices=[2], intermediates_only=True,
                                                output_fmt="NLC")["image_intermediates"][0]
        expected = _l2_map(clip.visual.ln_post(tok) @ clip.visual.proj, (4, 4))
        torch.testing.assert_close(m.dense_features(x), expected, atol=1e-5, rtol=1e-5)


def test_encode_image_equals_timm_eva():
    m = _model(EVA)
    tr = m.visual.trunk
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m.encode_image(x), m.visual(x), atol=1e-5, rtol=1e-5)
        m.last_block = m.last_block._replace(mode="vanilla")
        tok = tr.forward_features(x)[:, 1:]  # final norm included
        expected = _l2_map(tr.head(tok), (4, 4))
        torch.testing.assert_close(m.dense_features(x), expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- value path, written naively
@pytest.mark.parametrize("drop_residual,drop_ffn", [(False, False), (True, False), (True, True)])
def test_value_path_eva_naive(drop_residual, drop_ffn):
    m = _model(EVA, drop_residual=drop_residual, drop_ffn=drop_ffn)
    tr = m.visual.trunk
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        sp, pre = tr.forward_intermediates(x, indices=[1], intermediates_only=True,
                                           return_prefix_tokens=True, output_fmt="NLC")[0]
        t = torch.cat([pre, sp], dim=1)  # tokens after blocks 0..L-2 (timm's own forward)
        blk = tr.blocks[-1]
        a, mlp = blk.attn, blk.mlp
        v = _lin(_ln(t, blk.norm1), a.v_proj)  # x Wv + v_bias
        upd = _lin(_ln(v, a.norm), a.proj)  # proj(inner_attn_ln(v))
        t = upd if drop_residual else t + upd
        if not drop_ffn:
            y = _ln(t, blk.norm2)
            hid = F.silu(_lin(y, mlp.fc1_g)) * _lin(y, mlp.fc1_x)  # silu(w1 x) * (w2 x)
            t = t + _lin(_ln(hid, mlp.norm), mlp.fc2)  # w3(ffn_ln(.))
        expected = _l2_map(_lin(_ln(t[:, 1:], tr.norm), tr.head), (4, 4))
        torch.testing.assert_close(m.dense_features(x), expected, atol=1e-5, rtol=1e-5)


def test_value_path_openai_naive():
    m = _model(VIT)
    vis = m.visual
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = vis.forward_intermediates(x, indices=[1], intermediates_only=True,
                                        output_fmt="NLC", output_extra_tokens=True)
        t = torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], 1)
        blk = vis.transformer.resblocks[-1]
        C = t.shape[-1]
        w, b = blk.attn.in_proj_weight, blk.attn.in_proj_bias
        v = _ln(t, blk.ln_1) @ w[2 * C:].t() + b[2 * C:]  # the V slice of in_proj
        t = t + _lin(v, blk.attn.out_proj)
        t = t + _lin(F.gelu(_lin(_ln(t, blk.ln_2), blk.mlp.c_fc)), blk.mlp.c_proj)
        expected = _l2_map(_ln(t[:, 1:], vis.ln_post) @ vis.proj, (4, 4))
        torch.testing.assert_close(m.dense_features(x), expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- sizes, caches, errors
@pytest.mark.parametrize("cfg", [VIT, EVA], ids=["vit", "eva"])
def test_any_multiple_of_patch(cfg):
    m = _model(cfg)
    with torch.no_grad():
        d = m.dense_features(torch.randn(2, 3, 40, 24))
        assert d.shape == (2, 32, 5, 3) and d.dtype == torch.float32
        torch.testing.assert_close(d.norm(dim=1), torch.ones(2, 5, 3))
        assert m.pos_embed_for((5, 3)) is m.pos_embed_for((5, 3))  # cached per grid
        assert m.pos_embed_for((4, 4)) is m._pos_param()[0]  # native grid: the parameter
        assert m.encode_image(torch.randn(2, 3, 48, 48)).shape == (2, 32)
    with pytest.raises(ValueError, match="multiple of the patch"):
        m.dense_features(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match="smaller than one"):
        m.dense_features(torch.randn(1, 3, 4, 8))


def test_rope_and_pos_grad():
    m = _model(EVA)
    torch.testing.assert_close(m.rope_for((4, 4), torch.device("cpu")),
                               m.visual.trunk.rope.get_embed())
    torch.testing.assert_close(m.rope_for((5, 3), torch.device("cpu")),
                               ops.build_rope_table((5, 3), 32, ref_grid=(16, 16)))
    vit = _model(VIT).train()  # trainable positional embedding: not cached, receives gradients
    vit.dense_features(torch.randn(1, 3, 40, 24)).sum().backward()
    assert vit.visual.positional_embedding.grad.abs().sum() > 0
    assert not vit._pos_cache


@pytest.mark.parametrize("mode", LAST_BLOCK_MODES)
def test_last_block_modes_sdpa_equals_materialised(mode):
    m = _model(EVA, last_block_mode=mode, gaussian_std=2.0 if mode == "kk" else None)
    x = torch.randn(1, 3, 40, 24)
    with torch.no_grad():
        fast = m.dense_features(x)
        m.attn_impl = "math"
        slow = m.dense_features(x)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-4)
    if mode != "vanilla":
        m.attn_impl = "sdpa"
        m.last_block = m.last_block._replace(mode="vanilla", gaussian_std=None)
        with torch.no_grad():
            assert (m.dense_features(x) - fast).abs().max() > 1e-3
    with pytest.raises(ValueError):
        CLIPViT(EVA, last_block_mode="qk")


# ---------------------------------------------------------------- Detectron2 backbone
@pytest.mark.parametrize("cfg", [VIT, EVA], ids=["vit", "eva"])
def test_backbone_taps(cfg):
    m = _model(cfg, out_indices=[0, 2], out_dense=True)
    shapes = m.output_shape()
    assert list(shapes) == ["block0", "block2", "clip_dense"]
    assert shapes["block0"].channels == 64 and shapes["block0"].stride == 8
    assert shapes["clip_dense"].channels == 32 and m.strides_float["block2"] == 8.0
    assert m.size_divisibility == 8 and m.padding_constraints == {"size_divisibility": 8}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = m(x)
        if cfg is VIT:
            ref = m.visual.forward_intermediates(x, indices=[0, 2], intermediates_only=True)
            ref = ref["image_intermediates"]
        else:
            ref = m.visual.trunk.forward_intermediates(x, indices=[0, 2], intermediates_only=True)
        torch.testing.assert_close(out["block0"], ref[0], atol=1e-5, rtol=1e-5)
        # the last tap is the modified (value-path) last block, not the vanilla one
        assert (out["block2"] - ref[1]).abs().max() > 1e-3
        torch.testing.assert_close(out["clip_dense"], m.dense_features(x))
        early = _model(cfg, out_indices=[1])(x)
        assert list(early) == ["block1"] and early["block1"].shape == (2, 64, 4, 4)


# ---------------------------------------------------------------- freezing
def _trainable(m):
    return {n for n, p in m.named_parameters() if p.requires_grad}


def test_freeze_modes():
    eva = CLIPViT(EVA, freeze="clipself")
    names = {n for n, _ in eva.named_parameters()}
    assert _trainable(eva) == {n for n in names if ".blocks." in n}
    assert not any(k in n for n in _trainable(eva)
                   for k in ("patch_embed", "pos_embed", "cls_token", "trunk.norm.", "head"))

    vit = CLIPViT(VIT, unlocked_groups=3)  # the 3 blocks
    assert _trainable(vit) == {n for n, _ in vit.named_parameters() if ".resblocks." in n}
    vit.lock(4)  # + positional_embedding
    assert "visual.positional_embedding" in _trainable(vit)
    assert "visual.conv1.weight" not in _trainable(vit)
    vit.lock(5)  # + [conv1, class_embedding, ln_pre]; ln_post / proj never
    assert {"visual.conv1.weight", "visual.class_embedding", "visual.ln_pre.weight"} <= \
        _trainable(vit)
    assert not any("ln_post" in n or n == "visual.proj" for n in _trainable(vit))
    with pytest.raises(ValueError):
        vit.lock(6)

    frozen = CLIPViT(VIT, freeze="frozen").train()
    assert not frozen.training and not frozen.visual.training and not _trainable(frozen)
    out = frozen(torch.randn(1, 3, 32, 32))
    assert not out["block2"].requires_grad
    assert CLIPViT(VIT, freeze="all").train().training
    with pytest.raises(ValueError):
        CLIPViT(VIT, freeze="some")
    with pytest.raises(ValueError):
        CLIPViT(VIT, freeze="clipself", unlocked_groups=2)


# ---------------------------------------------------------------- precision and memory options
def test_bf16_autocast_close_to_fp32():
    m32 = _model(EVA)
    mbf = CLIPViT(EVA, autocast_dtype="bf16").eval()
    mbf.load_state_dict(m32.state_dict())
    x = torch.randn(1, 3, 40, 24)
    with torch.no_grad():
        a, b = m32.dense_features(x), mbf.dense_features(x)
        assert b.dtype == torch.float32
        assert (a * b).sum(1).min() > 0.98  # cosine per location
        assert mbf(x)["block2"].dtype == torch.float32
        assert mbf.encode_image(x).dtype == torch.float32


def test_grad_checkpointing_same_gradients():
    m = _model(EVA).train()
    m2 = copy.deepcopy(m)
    m2.grad_checkpointing = True
    x = torch.randn(1, 3, 32, 24)
    for model in (m, m2):
        model.dense_features(x).square().mean().backward()
    for (n, p), (_, p2) in zip(m.named_parameters(), m2.named_parameters()):
        torch.testing.assert_close(p.grad, p2.grad, atol=1e-6, rtol=1e-5, msg=n)


# ---------------------------------------------------------------- configs by name / file
def test_registered_and_json_configs(tmp_path):
    import open_clip

    cfg = {k: v for k, v in VIT.items() if k != "name"}
    path = tmp_path / "clipself-test-tiny-vit.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(str(path))
    assert CLIPViT("clipself-test-tiny-vit").depth == 3
    assert CLIPViT(str(path)).model_name == "clipself-test-tiny-vit"
    with pytest.raises(ValueError, match="add_model_config"):
        CLIPViT("no-such-model")
    with pytest.raises(FileNotFoundError):
        CLIPViT(VIT, pretrained=str(tmp_path / "missing.pt"))


def test_benchmark_tool_smoke(tmp_path):
    path = tmp_path / "tiny_eva.json"
    path.write_text(json.dumps({k: v for k, v in EVA.items() if k != "name"}))
    tool = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "benchmark.py")
    main = runpy.run_path(tool)["main"]
    buf = io.StringIO()
    with redirect_stdout(buf):
        main(["dense", "--model", str(path), "--size", "48", "--repeats", "1", "--warmup", "0",
              "--boxes", "4", "--reference"])
    res = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert res["grid"] == [6, 6] and res["reference"]["max_abs_diff"] < 1e-4
    assert {"images_per_s", "seconds_per_image", "peak_mem_mb", "device", "dtype"} <= set(res)


def test_lazy_config_instantiate():
    from detectron2.config import LazyCall as L
    from detectron2.config import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"net": L(CLIPViT)(model_name=EVA, out_indices=[0, 2], freeze="frozen")})
    net = instantiate(cfg.net)
    assert isinstance(net, CLIPViT) and net.out_indices == [0, 2] and net.family == "eva"
