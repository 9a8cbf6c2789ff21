"""Every config in open_clip's registry builds through ``CLIPTower`` (meta device: no weights, no
compute), and one tower of every distinct architecture variant runs ``dense_features`` /
``encode_image`` on the meta device at a non-square size (shapes only; docs/dense_features.md §9).

Count before issue 15: ``CLIPViT(name)`` built 59 of the 144 configs of open_clip 3.3.
"""
import warnings

import open_clip
import pytest
import torch

from clipself.modeling import CLIPConvTower, CLIPTower, CLIPViT, TowerUnsupported
from clipself.modeling.backbone import tower_kind


def _variant(m):
    """A key that separates architecture variants (families, block / attention / pooling
    types, stems)."""
    v = m.visual
    t = getattr(v, "trunk", v)
    key = [type(v).__name__, type(t).__name__, str(getattr(t, "global_pool", ""))]
    if isinstance(m, CLIPViT):
        blk = m._blocks[0]
        key += [type(blk).__name__, type(blk.attn).__name__, m.num_prefix_tokens,
                m._rope_spec is not None, getattr(v, "attn_pool", None) is not None,
                str(getattr(v, "pool_type", "")), type(getattr(t, "patch_embed", v)).__name__]
    else:
        key += [type(t.head).__name__ if hasattr(t, "head") else "attnpool", m.stride]
    return tuple(key)


@pytest.fixture(scope="module")
def built():
    names = open_clip.list_models()
    towers, failed = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            try:
                with torch.device("meta"):
                    towers[name] = CLIPTower(name)
            except TowerUnsupported as err:
                failed[name] = str(err)
    print(f"\nCLIPTower builds {len(towers)} of {len(names)} open_clip towers "
          f"(open_clip {open_clip.__version__})")
    return names, towers, failed


def test_every_open_clip_tower_builds(built):
    names, towers, failed = built
    assert not failed, failed
    assert len(towers) == len(names) and len(names) >= 144
    families = {}
    for name, m in towers.items():
        cfg = open_clip.get_model_config(name)
        assert m.embed_dim == cfg["embed_dim"], name
        assert m.stride > 0 and isinstance(m.stride, float)
        kind = "transformer" if isinstance(m, CLIPViT) else "conv"
        assert isinstance(m, CLIPViT if kind == "transformer" else CLIPConvTower)
        families[m.family] = families.get(m.family, 0) + 1
    print("families:", families)
    assert set(families) == {"openai", "timm_vit", "eva", "modified_resnet", "timm_cnn"}
    assert tower_kind("RN50") == "conv" and tower_kind("ViT-B-16-SigLIP2") == "transformer"


def test_one_tower_per_variant_runs_on_meta(built):
    _, towers, _ = built
    reps = {}
    for name, m in towers.items():
        reps.setdefault(_variant(m), (name, m))
    assert len(reps) >= 15
    for name, m in reps.values():
        s = int(m.stride)
        H, W = m.image_size
        if "swin" not in name:  # Swin takes only its native size
            W += 2 * s
        x = torch.empty(2, 3, H, W, device="meta")
        with torch.no_grad():
            d = m.eval().dense_features(x)
            e = m.encode_image(x)
            taps = m(x)
        assert d.shape == (2, m.embed_dim, H // s, W // s), name
        assert e.shape == (2, m.embed_dim), name
        assert list(taps) == m._out_features, name
