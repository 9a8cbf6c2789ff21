"""Loading ``pretrained=`` into every tower family (clipself.modeling.backbone.tower_weights): a
checkpoint of another tower is reported by name before anything is resized; positions stored for
another grid are resampled with the tower's own prefix-token count."""
import copy

import pytest
import torch

from clipself.modeling import CLIPTower
from clipself.modeling import dense_ops as ops
from clipself.modeling.backbone.tower_weights import check_state_dict_shapes

from tests.modeling.tiny_towers import TINY, randomize


def _with(key, **vision):
    cfg = copy.deepcopy(TINY[key])
    cfg["vision_cfg"].update(vision)
    return cfg


def _sd(m):
    return {"visual." + k: v for k, v in m.visual.state_dict().items()}


def test_check_state_dict_shapes():
    model = {"a": torch.zeros(2, 3), "pos_embed": torch.zeros(1, 5, 4), "c": torch.zeros(1)}
    ckpt = {"a": torch.zeros(2, 3), "pos_embed": torch.zeros(1, 10, 4), "d": torch.zeros(1)}
    missing, unexpected, resizable = check_state_dict_shapes(ckpt, model)
    assert (missing, unexpected, resizable) == (["c"], ["d"], ["pos_embed"])
    with pytest.raises(RuntimeError, match=r"missing keys \(1\): c"):
        check_state_dict_shapes(ckpt, model, strict_keys=True)
    bad = dict(ckpt, a=torch.zeros(3, 3), pos_embed=torch.zeros(1, 10, 8))
    with pytest.raises(ValueError, match=r"a: checkpoint \(3, 3\) vs model \(2, 3\)"):
        check_state_dict_shapes(bad, model, source="x.pt")
    with pytest.raises(ValueError, match=r"pos_embed: checkpoint \(1, 10, 8\)"):
        check_state_dict_shapes(bad, model)


def test_checkpoint_of_another_tower_is_named_before_resizing():
    """A wider ViT stored at another input size: the shape mismatches are listed by name (not a
    reshape error from resampling its positional embedding)."""
    other = CLIPTower(_with("openai", width=96, image_size=48))
    with pytest.raises(ValueError) as err:
        CLIPTower(TINY["openai"], pretrained=_sd(other))
    msg = str(err.value)
    assert "conv1.weight: checkpoint (96, 3, 8, 8) vs model (64, 3, 8, 8)" in msg
    assert "another model" in msg and "positional_embedding" in msg
    # another family
    with pytest.raises(ValueError, match="'open_clip_vit' cannot be loaded into a timm ConvNeXt"):
        CLIPTower(TINY["convnext"], pretrained=_sd(CLIPTower(TINY["rn"])))
    # the same family, another variant (CoCa pools to D before ln_post): every key is named
    with pytest.raises(ValueError, match=r"(?s)ln_post.weight: checkpoint \(64,\) vs model "
                                         r"\(32,\).*missing keys \(11\): attn_pool"):
        CLIPTower(TINY["coca"], pretrained=_sd(CLIPTower(TINY["openai"])))


@pytest.mark.parametrize("key,prefix", [("openai", 1), ("siglip", 0), ("eva02", 1)])
def test_positions_from_another_grid(key, prefix):
    big_cfg = _with(key, image_size=48)
    if "timm_model_kwargs" in big_cfg["vision_cfg"]:
        big_cfg["vision_cfg"]["timm_model_kwargs"]["img_size"] = 48
    big = randomize(CLIPTower(big_cfg).visual)
    m = CLIPTower(TINY[key], pretrained={"visual." + k: v for k, v in big.state_dict().items()})
    assert m.load_report.ok
    name = "positional_embedding" if key == "openai" else "trunk.pos_embed"
    assert m.load_report.resized == [name]
    src = big.positional_embedding if key == "openai" else big.trunk.pos_embed
    torch.testing.assert_close(m._pos_param()[0], ops.resize_abs_pos_embed(src, (6, 6), (4, 4),
                                                                           prefix))


def test_modified_resnet_attention_pool_positions_resized():
    big = randomize(CLIPTower(_with("rn", image_size=128)).visual)  # 4x4 pool grid
    m = CLIPTower(TINY["rn"], pretrained={"visual." + k: v for k, v in big.state_dict().items()})
    assert m.load_report.ok and m.load_report.resized == ["attnpool.positional_embedding"]
    torch.testing.assert_close(
        m.visual.attnpool.positional_embedding,
        ops.resize_abs_pos_embed(big.attnpool.positional_embedding, (4, 4), (2, 2), 1))


def test_timm_cnn_loads_open_clip_layout():
    src = CLIPTower(TINY["convnext"])
    randomize(src.visual)
    sd = _sd(src)
    sd["logit_scale"] = torch.tensor(4.6)
    m = CLIPTower(TINY["convnext"], pretrained=sd).eval()
    rep = m.load_report
    assert rep.ok and rep.layout == "open_clip_timm" and rep.ignored == ["logit_scale"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(m.dense_features(x), src.eval().dense_features(x))
    del sd["visual.head.proj.weight"]
    with pytest.raises(RuntimeError, match="head.proj.weight"):
        CLIPTower(TINY["convnext"], pretrained=sd)
    loose = CLIPTower(TINY["convnext"], pretrained=sd, strict_load=False)
    assert loose.load_report.missing_keys == ["head.proj.weight"]


def test_class_token_mismatch_says_why():
    """A class-token tower's positions into SigLIP (no class token): 1 + 16 positions cannot be a
    grid without prefix tokens."""
    pe = CLIPTower(TINY["pe"])
    with pytest.raises(ValueError, match="class / register tokens"):
        CLIPTower(TINY["siglip"], pretrained=_sd(pe), strict_load=False)
