"""Which CLIP tower parameters CAT-Seg fine-tunes (OpenAI-style ViT and EVA02), and their LR."""
import copy

import pytest
import torch

from clipself.modeling import CLIPViT
from clipself.modeling.catseg import (
    apply_finetune_policy,
    catseg_lr_factor,
    catseg_param_groups,
    finetune_masks,
)
from clipself.solver import build_param_groups

TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
VIT = {"name": "tiny-vit", "embed_dim": 32, "text_cfg": TEXT, "vision_cfg": {
    "image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16}}
EVA = {"name": "tiny-eva", "embed_dim": 32, "text_cfg": TEXT, "vision_cfg": {
    "image_size": 32, "timm_model_name": "eva02_base_patch16_clip_224", "timm_pool": "token",
    "timm_proj": None,
    "timm_model_kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2,
                          "num_heads": 2}}}
EVA_FUSED = copy.deepcopy(EVA)
EVA_FUSED["vision_cfg"]["timm_model_kwargs"]["qkv_fused"] = True


def _tower(cfg):
    torch.manual_seed(0)
    return CLIPViT(cfg)


def _trainable(m):
    return sorted(n for n, p in m.named_parameters() if p.requires_grad)


def _blocks(names, fmt):
    return sorted(fmt.format(i=i, n=n) for i in range(2) for n in names)


def test_attention_policy_openai_vit():
    m = _tower(VIT)
    names = apply_finetune_policy(m, "attention")
    want = ["visual.positional_embedding"] + _blocks(
        ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"],
        "visual.transformer.resblocks.{i}.attn.{n}")
    assert _trainable(m) == sorted(want) == sorted(names)


def test_attention_policy_eva02():
    m = _tower(EVA)
    apply_finetune_policy(m, "attention")
    want = ["visual.trunk.pos_embed"] + _blocks(
        ["q_proj.weight", "q_proj.bias", "k_proj.weight", "v_proj.weight", "v_proj.bias",
         "proj.weight", "proj.bias"], "visual.trunk.blocks.{i}.attn.{n}")
    assert _trainable(m) == sorted(want)  # the inner attention LayerNorm stays frozen
    fused = _tower(EVA_FUSED)
    apply_finetune_policy(fused, "attention")
    want = ["visual.trunk.pos_embed"] + _blocks(
        ["qkv.weight", "q_bias", "v_bias", "proj.weight", "proj.bias"],
        "visual.trunk.blocks.{i}.attn.{n}")
    assert _trainable(fused) == sorted(want)


def test_qv_policy_separate_projections():
    m = _tower(EVA)
    apply_finetune_policy(m, "qv")
    assert _trainable(m) == _blocks(["q_proj.weight", "v_proj.weight"],
                                    "visual.trunk.blocks.{i}.attn.{n}")


@pytest.mark.parametrize("cfg,weight", [(VIT, "visual.transformer.resblocks.0.attn.in_proj_weight"),
                                        (EVA_FUSED, "visual.trunk.blocks.0.attn.qkv.weight")])
def test_qv_policy_masks_the_k_rows_of_fused_weights(cfg, weight):
    m = _tower(cfg).train()
    apply_finetune_policy(m, "qv")
    assert weight in _trainable(m) and len(_trainable(m)) == 2  # one fused weight per block
    assert finetune_masks(m, "qv")[weight] == "qv"
    m(torch.randn(1, 3, 32, 32), dense=True)["clip_dense"].square().sum().backward()
    g = dict(m.named_parameters())[weight].grad
    n = g.shape[0] // 3
    assert g[n:2 * n].abs().sum() == 0
    assert g[:n].abs().sum() > 0 and g[2 * n:].abs().sum() > 0
    # Adam leaves the k rows untouched
    p = dict(m.named_parameters())[weight]
    before = p.detach().clone()
    torch.optim.Adam([q for q in m.parameters() if q.requires_grad], lr=0.1).step()
    assert torch.equal(p[n:2 * n], before[n:2 * n]) and not torch.equal(p[:n], before[:n])
    # re-applying another policy removes the gradient mask
    apply_finetune_policy(m, "attention")
    m.zero_grad()
    m(torch.randn(1, 3, 32, 32), dense=True)["clip_dense"].square().sum().backward()
    assert dict(m.named_parameters())[weight].grad[n:2 * n].abs().sum() > 0


def test_frozen_policy_and_unknown_policy():
    m = _tower(VIT)
    assert apply_finetune_policy(m, "frozen") == [] and _trainable(m) == []
    with pytest.raises(ValueError, match="policy"):
        apply_finetune_policy(m, "full")


def test_lr_factor_and_param_groups():
    assert catseg_lr_factor("clip.visual.positional_embedding") == 0.01
    assert catseg_lr_factor("clip.visual.x", "attention", clip_multiplier=0.1) == 0.1
    assert catseg_lr_factor("clip.visual.x", "frozen") == 0.0
    assert catseg_lr_factor("aggregator.layers.0.classes.q.weight", "qv") == 1.0

    class _M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.clip = _tower(VIT)
            self.head = torch.nn.Linear(2, 2)

    model = _M()
    apply_finetune_policy(model.clip, "attention")
    groups = build_param_groups(model, weight_decay=1e-4, base_lr=2e-4,
                                lr_factor_func=lambda n: catseg_lr_factor(n, "attention"))
    lrs = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lrs[id(model.head.weight)] == pytest.approx(2e-4)
    assert lrs[id(model.clip.visual.positional_embedding)] == pytest.approx(2e-6)
    assert id(model.clip.visual.ln_post.weight) not in lrs  # frozen: in no group


def test_catseg_param_groups_decay_and_lr():
    class _M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.clip = _tower(VIT)
            self.head = torch.nn.Linear(2, 2)
            self.norm = torch.nn.LayerNorm(2)

    model = _M()
    apply_finetune_policy(model.clip, "attention")
    groups = catseg_param_groups(model, base_lr=2e-4, weight_decay=1e-4)
    by_param = {id(p): g for g in groups for p in g["params"]}
    assert by_param[id(model.head.weight)]["lr"] == pytest.approx(2e-4)
    assert by_param[id(model.head.weight)]["weight_decay"] == 1e-4
    assert by_param[id(model.norm.weight)]["weight_decay"] == 0.0
    pos = by_param[id(model.clip.visual.positional_embedding)]
    assert pos["lr"] == pytest.approx(2e-6) and pos["weight_decay"] == 0.0  # an embedding
    attn = [p for n, p in model.clip.named_parameters() if n.endswith("attn.in_proj_weight")]
    assert attn and by_param[id(attn[0])]["weight_decay"] == 1e-4
    assert by_param[id(attn[0])]["lr"] == pytest.approx(2e-6)
