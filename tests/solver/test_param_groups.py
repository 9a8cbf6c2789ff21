import pytest
import torch

from clipself.solver import build_param_groups, is_no_decay


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.ln_post = torch.nn.LayerNorm(4)
        self.proj = torch.nn.Parameter(torch.zeros(4, 2))
        self.logit_scale = torch.nn.Parameter(torch.ones(1, 1))
        self.frozen = torch.nn.Linear(2, 2)
        self.frozen.requires_grad_(False)
        self.shared = self.conv  # the same parameters twice


def _names(model, group):
    ids = {id(p) for p in group["params"]}
    return sorted(n for n, p in model.named_parameters() if id(p) in ids)


def test_clipself_exemptions():
    model = _Tiny()
    groups = build_param_groups(model, weight_decay=0.1)
    by_wd = {g["weight_decay"]: _names(model, g) for g in groups}
    assert by_wd[0.1] == ["conv.weight", "proj"]
    # ndim < 2, "ln", "bias" and "logit_scale" (2-D, exempt by name) get no decay
    assert by_wd[0.0] == ["conv.bias", "ln_post.bias", "ln_post.weight", "logit_scale"]
    # frozen parameters are left out, shared ones counted once
    assert sum(len(g["params"]) for g in groups) == 6


def test_decay_everything_and_lr_factors():
    model = _Tiny()
    groups = build_param_groups(
        model, weight_decay=0.1, no_decay_keywords=[], no_decay_ndim_below=0,
        lr_factor_func=lambda n: 0.5 if n.startswith("conv") else 1.0, base_lr=1e-4,
    )
    assert {g["weight_decay"] for g in groups} == {0.1}
    lrs = {g["lr"]: _names(model, g) for g in groups}
    assert lrs[5e-5] == ["conv.bias", "conv.weight"]
    assert is_no_decay("blocks.0.norm1.weight", torch.zeros(3))


def test_no_trainable_parameters_is_an_error():
    model = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        build_param_groups(model, weight_decay=0.1)
