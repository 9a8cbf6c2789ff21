import argparse
import io
import json
import os
import runpy
from contextlib import redirect_stdout

import pytest
import torch

from clipself.checkpoint import (
    UnsafeCheckpointError,
    eva_clip_to_timm,
    export_clipself_checkpoint,
    has_eva_clip_layout,
    load_visual_weights,
    read_checkpoint,
    visual_to_clipself_state_dict,
)
from clipself.modeling import CLIPViT, build_visual_tower
from clipself.modeling import dense_ops as ops

from tests.modeling.tiny_towers import TINY

TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}


def _eva_cfg(img=32):
    return {"name": "tiny-eva", "embed_dim": 32, "text_cfg": TEXT, "vision_cfg": {
        "image_size": img, "timm_model_name": "eva02_base_patch16_clip_224", "timm_pool": "token",
        "timm_proj": None,
        "timm_model_kwargs": {"img_size": img, "patch_size": 8, "embed_dim": 64, "depth": 2,
                              "num_heads": 2}}}


EVA = _eva_cfg()
VIT = {"name": "tiny-vit", "embed_dim": 32, "text_cfg": TEXT, "vision_cfg": {
    "image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32}}


@torch.no_grad()
def _model(cfg, seed=0):
    torch.manual_seed(seed)
    m = CLIPViT(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    for p in m.parameters():
        p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return m


def _same_outputs(a, b):
    x = torch.randn(2, 3, 40, 24)
    with torch.no_grad():
        assert torch.equal(a.dense_features(x), b.dense_features(x))
        assert torch.equal(a.encode_image(x), b.encode_image(x))


# ---------------------------------------------------------------- the authors' EVA-CLIP layout
def test_export_to_authors_layout_and_back(tmp_path):
    m = _model(EVA)
    text = {"text.token_embedding.weight": torch.randn(10, 4), "logit_scale": torch.tensor(4.6)}
    path = str(tmp_path / "clipself.pt")
    ckpt = export_clipself_checkpoint(m.visual, path, extra_state=text, name="tiny")
    sd = ckpt["state_dict"]
    assert set(ckpt) == {"epoch", "name", "state_dict"}
    for k in ("attn.q_proj.weight", "attn.k_proj.weight", "attn.v_proj.weight", "attn.q_bias",
              "attn.v_bias", "attn.inner_attn_ln.weight", "mlp.w1.weight", "mlp.w2.bias",
              "mlp.ffn_ln.weight", "mlp.w3.weight", "attn.rope.freqs_cos"):
        assert f"visual.blocks.1.{k}" in sd, k
    assert not any(s in k for k in sd for s in ("fc1_g", "q_proj.bias", "k_bias", "trunk."))
    assert sd["visual.rope.freqs_sin"].shape == (16, 32)
    assert "text.token_embedding.weight" in sd

    m2 = CLIPViT(EVA, pretrained=path).eval()
    rep = m2.load_report
    assert rep.ok and rep.layout == "eva_clip"
    assert set(rep.ignored) == set(text)
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    _same_outputs(m, m2)


def test_prefixes_and_wrappers():
    m = _model(EVA)
    sd = visual_to_clipself_state_dict(m.visual)
    bare = {k[len("visual."):]: v for k, v in sd.items()}
    variants = {
        "state_dict": {"state_dict": sd},
        "module": {"state_dict": {"module." + k: v for k, v in sd.items()}},
        "bare": bare,
        "model": {"model": sd},
        "fvit": {"meta": {}, "state_dict": {**{"backbone.visual." + k: v for k, v in bare.items()},
                                            "neck.fpn_convs.0.conv.weight": torch.zeros(1)}},
        "open_clip": {"visual." + k: v for k, v in m.visual.state_dict().items()},
        "timm": m.visual.trunk.state_dict(),
    }
    for name, obj in variants.items():
        fresh = CLIPViT(EVA, pretrained=obj).eval()
        assert fresh.load_report.ok, name
        _same_outputs(m, fresh)


def test_missing_unexpected_and_wrong_family():
    m = _model(EVA)
    sd = visual_to_clipself_state_dict(m.visual)
    del sd["visual.blocks.1.mlp.w3.weight"]
    sd["visual.blocks.1.attn.extra"] = torch.zeros(3)
    with pytest.raises(RuntimeError, match="trunk.blocks.1.mlp.fc2.weight"):
        CLIPViT(EVA, pretrained=sd)
    loose = CLIPViT(EVA, pretrained=sd, strict_load=False)
    rep = loose.load_report
    assert rep.missing_keys == ["trunk.blocks.1.mlp.fc2.weight"]
    assert rep.unexpected_keys == ["trunk.blocks.1.attn.extra"]
    assert "missing keys (1)" in str(rep) and "unexpected keys (1)" in str(rep)
    with pytest.raises(ValueError, match="cannot be loaded"):
        CLIPViT(VIT, pretrained=sd)
    with pytest.raises(ValueError, match="cannot be loaded"):
        CLIPViT(EVA, pretrained={"visual.conv1.weight": torch.zeros(64, 3, 8, 8)})


def test_positional_embedding_from_another_grid():
    big = _model(_eva_cfg(img=48))  # 6x6 grid
    small = CLIPViT(EVA, pretrained=visual_to_clipself_state_dict(big.visual))
    assert small.load_report.resized == ["trunk.pos_embed"]
    expected = ops.resize_abs_pos_embed(big.visual.trunk.pos_embed, (6, 6), (4, 4))
    torch.testing.assert_close(small.visual.trunk.pos_embed, expected, atol=1e-6, rtol=1e-6)
    vit_big = _model(dict(VIT, vision_cfg=dict(VIT["vision_cfg"], image_size=48)))
    vit = CLIPViT(VIT, pretrained=vit_big.state_dict())
    assert vit.load_report.resized == ["positional_embedding"]


def test_read_checkpoint_is_weights_only(tmp_path):
    path = str(tmp_path / "pickled.pt")
    torch.save({"state_dict": {"a": torch.zeros(1)}, "args": argparse.Namespace(x=1)}, path)
    with pytest.raises(UnsafeCheckpointError, match="weights_only"):
        read_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        read_checkpoint(str(tmp_path / "none.pt"))


def test_convert_tool(tmp_path):
    m = _model(EVA)
    cfg_path = tmp_path / "tiny_eva.json"
    cfg_path.write_text(json.dumps({k: v for k, v in EVA.items() if k != "name"}))
    text = {"text.positional_embedding": torch.randn(16, 32), "logit_scale": torch.tensor(4.6)}
    src = str(tmp_path / "authors.pt")
    export_clipself_checkpoint(m.visual, src, extra_state=text)
    tool = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "convert_checkpoint.py")
    main = runpy.run_path(tool)["main"]
    oc, back = str(tmp_path / "open_clip.pt"), str(tmp_path / "back.pt")
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["to-open-clip", "--model", str(cfg_path), "--input", src, "--output", oc]) == 0
        assert main(["to-clipself", "--model", str(cfg_path), "--input", oc, "--output", back]) == 0
        assert main(["inspect", "--input", back]) == 0
    info = json.loads(buf.getvalue()[buf.getvalue().index("{"):])
    assert info["visual_layout"] == "eva_clip" and info["other_keys_by_root"] == {
        "text": 1, "logit_scale": 1}
    sd_oc = torch.load(oc, weights_only=True)
    assert "visual.trunk.blocks.0.mlp.fc1_g.weight" in sd_oc and "logit_scale" in sd_oc
    a = torch.load(src, weights_only=True)["state_dict"]
    b = torch.load(back, weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a file that does not match the model: a clear error, exit code 1
    with redirect_stdout(io.StringIO()):
        assert main(["to-open-clip", "--model", "ViT-B-16", "--input", src, "--output", oc]) == 1


# ---------------------------------------------------------------- full-size EVA02-B-16 (one build)
@pytest.fixture(scope="module")
def eva_b16():
    torch.manual_seed(0)
    return CLIPViT("EVA02-B-16").eval()


def test_eva02_b16_authors_layout(eva_b16):
    trunk = eva_b16.visual.trunk
    sd = visual_to_clipself_state_dict(eva_b16.visual)
    shapes = {
        "cls_token": (1, 1, 768), "pos_embed": (1, 197, 768),
        "patch_embed.proj.weight": (768, 3, 16, 16), "rope.freqs_cos": (196, 64),
        "blocks.11.attn.rope.freqs_sin": (196, 64), "blocks.0.attn.q_proj.weight": (768, 768),
        "blocks.0.attn.q_bias": (768,), "blocks.0.attn.v_bias": (768,),
        "blocks.0.attn.inner_attn_ln.weight": (768,), "blocks.0.mlp.w1.weight": (2048, 768),
        "blocks.0.mlp.w2.weight": (2048, 768), "blocks.0.mlp.ffn_ln.weight": (2048,),
        "blocks.0.mlp.w3.weight": (768, 2048), "norm.weight": (768,), "head.weight": (512, 768),
    }
    for k, s in shapes.items():
        assert tuple(sd["visual." + k].shape) == s, k
    assert "visual.blocks.0.attn.k_proj.bias" not in sd and "visual.fc_norm.weight" not in sd
    # the authors' RoPE buffers are timm's table at the native grid (reference grid 16)
    torch.testing.assert_close(sd["visual.rope.freqs_cos"], trunk.rope.get_embed()[:, 64:])
    torch.testing.assert_close(eva_b16.rope_for((14, 14), torch.device("cpu")),
                               trunk.rope.get_embed())
    # authors' layout -> timm layout is the exact inverse
    back = eva_clip_to_timm({k[7:]: v for k, v in sd.items()}, trunk)
    ref = trunk.state_dict()
    assert back.keys() == ref.keys() and all(torch.equal(back[k], ref[k]) for k in ref)
    rep = load_visual_weights(eva_b16.visual, sd)
    assert rep.ok and rep.layout == "eva_clip"


def test_eva02_b16_encode_image_equals_open_clip(eva_b16):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ref = eva_b16.visual(x)  # open_clip's TimmModel forward = CLIP.encode_image
        out = eva_b16.encode_image(x)
        assert ((out - ref).norm() / ref.norm()) < 1e-5
        dense = eva_b16.dense_features(torch.randn(1, 3, 160, 96))
    assert dense.shape == (1, 512, 10, 6)


@pytest.mark.parametrize("family,expected", [
    ("eva02", True), ("eva02e", False), ("pe", False), ("siglip", False), ("openai", False),
    ("rn", False), ("convnext", False)])
def test_only_authors_kind_of_eva_tower_is_written_in_the_eva_clip_layout(family, expected):
    """EVA02-B/L towers go to the EVA-CLIP layout; PE-Core (attention pool), SigLIP, CNNs and the
    fused-qkv EVA02-E keep open_clip's names, which their open_clip models load directly."""
    visual = build_visual_tower(TINY[family])
    assert has_eva_clip_layout(visual) is expected
    sd = visual_to_clipself_state_dict(visual)
    if not expected:
        assert sd.keys() == {"visual." + k for k in visual.state_dict()}
