"""Per tower family: ``CLIPTower(name).encode_image`` equals ``open_clip.create_model(name).visual``
with the same random weights, at the native input size (docs/dense_features.md §9).

The open_clip model is built with a tiny text tower (``text_cfg`` override: only the visual tower
is compared); native open_clip ViTs are also shrunk in depth through ``vision_cfg`` overrides
(width, heads, patch, pooling and image size kept). timm trunks run at full size: open_clip's
config cannot shrink them. The weights reach ``CLIPTower`` as a full open_clip state dict
(``pretrained=``), so the loading path is part of every check.
"""
import copy
import logging
import warnings

import open_clip
import pytest
import torch

from clipself.modeling import CLIPConvTower, CLIPTower, CLIPViT

from tests.modeling.tiny_towers import TEXT, randomize


def _pair(name, vision=None, tiny_text=True):
    """(open_clip model, CLIPTower) with the same random weights."""
    overrides = {"text_cfg": dict(TEXT)} if tiny_text else {}
    cfg = copy.deepcopy(open_clip.get_model_config(name))
    if vision:
        overrides["vision_cfg"] = dict(cfg["vision_cfg"], **vision)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)  # "no pretrained weights loaded"
        try:
            ref = open_clip.create_model(name, pretrained=None, **overrides).eval()
        finally:
            logging.disable(logging.NOTSET)
    randomize(ref.visual, std=0.02)
    tower = CLIPTower(dict(cfg, name=name, **overrides), pretrained=ref.state_dict()).eval()
    assert tower.load_report.ok, tower.load_report
    return ref, tower


def _native(ref):
    size = ref.visual.image_size
    return tuple(size) if isinstance(size, (tuple, list)) else (size, size)


def _check(name, cls, family, vision=None, tiny_text=True, batch=2):
    ref, tower = _pair(name, vision, tiny_text)
    assert isinstance(tower, cls) and tower.family == family
    H, W = _native(ref)
    x = torch.randn(batch, 3, H, W)
    with torch.no_grad():
        expected = ref.visual(x)
        expected = expected[0] if isinstance(expected, tuple) else expected  # CoCa: (pooled, tok)
        got = tower.encode_image(x)
        dense = tower.dense_features(x)
    diff = (got - expected).abs().max().item()
    print(f"\n{name}: encode_image vs open_clip visual, max abs diff {diff:.2e}")
    assert diff < 1e-5
    s = tower.stride
    assert dense.shape == (batch, tower.embed_dim, round(H / s), round(W / s))
    torch.testing.assert_close(dense.norm(dim=1), torch.ones(batch, *dense.shape[-2:]))
    return tower


# ---------------------------------------------------------------- native open_clip ViTs
@pytest.mark.parametrize("name", ["ViT-B-16", "ViT-L-14-CLIPA", "ViT-M-16-alt"])
def test_native_vit(name):
    """Class-token pool (ViT-B-16), average pool + final LN after pooling, no ln_pre (CLIPA),
    layer scale (ViT-M-16-alt); two blocks of the real width."""
    _check(name, CLIPViT, "openai", vision={"layers": 2})


def test_coca_attentional_pooler():
    _check("coca_ViT-B-32", CLIPViT, "openai", tiny_text=False)


# ---------------------------------------------------------------- timm ViTs and Eva
def test_siglip2_map_head_no_class_token():
    m = _check("ViT-B-16-SigLIP2", CLIPViT, "timm_vit", batch=1)
    assert m.num_prefix_tokens == 0


def test_pe_core_rope_and_map_head():
    m = _check("PE-Core-B-16", CLIPViT, "eva", batch=1)
    assert m.num_prefix_tokens == 1 and m._rope_spec.grid_indexing == "xy"


def test_eva02():
    _check("EVA02-B-16", CLIPViT, "eva", batch=1)


def test_relpos_vit():
    _check("vit_relpos_medium_patch16_cls_224", CLIPViT, "timm_vit", batch=1)


# ---------------------------------------------------------------- CNN towers
def test_modified_resnet():
    _check("RN50", CLIPConvTower, "modified_resnet")


def test_convnext():
    _check("convnext_tiny", CLIPConvTower, "timm_cnn")


# ---------------------------------------------------------------- slower hybrids (make test-all)
@pytest.mark.slow
@pytest.mark.parametrize("name,cls", [
    ("MobileCLIP2-S0", CLIPConvTower), ("MobileCLIP-B", CLIPViT), ("ViTamin-S", CLIPViT),
    ("swin_base_patch4_window7_224", CLIPConvTower),
])
def test_fastvit_hybrid_and_swin(name, cls):
    _check(name, cls, "timm_vit" if cls is CLIPViT else "timm_cnn", batch=1)
