"""``grad_checkpointing=True`` gives the gradients of the plain pass for every tower family and
every last-block mode it supports (ViTs: per block; CNNs: per stage, BatchNorm in eval mode)."""
import copy

import pytest
import torch

from clipself.modeling import LAST_BLOCK_MODES, CLIPTower

from tests.modeling.tiny_towers import CNN_FAMILIES, TINY, VIT_FAMILIES, randomize

ALL = [(f, m, {}) for f in VIT_FAMILIES for m in LAST_BLOCK_MODES]
ALL += [(f, "v", {"drop_residual": True, "drop_ffn": True}) for f in ("openai", "pe")]
ALL += [("rn", m, {}) for m in LAST_BLOCK_MODES] + [("convnext", "v", {})]
#: the default suite: every family in "v" and "csa" (where it applies), every mode on one ViT and
#: on ModifiedResNet, drop residual / FFN; the whole matrix runs in make test-all
DEFAULT = [c for c in ALL if c[1] in ("v", "csa") or c[0] in ("openai", "rn")]
CASES = DEFAULT + [pytest.param(*c, marks=pytest.mark.slow) for c in ALL if c not in DEFAULT]


@pytest.mark.parametrize("family,mode,extra", CASES)
def test_checkpointed_gradients_equal_plain(family, mode, extra):
    torch.manual_seed(0)
    plain = CLIPTower(TINY[family], freeze="none", last_block_mode=mode, **extra)
    randomize(plain)
    ckpt = copy.deepcopy(plain)
    ckpt.grad_checkpointing = True
    size = 64 if family in CNN_FAMILIES else 32
    x = torch.randn(2, 3, size, size + (32 if family in CNN_FAMILIES else 8))
    for model in (plain, ckpt):
        model.train()
        torch.manual_seed(1)  # the same dropout draws (timm's relative-position MLP has some)
        loss = model.dense_features(x).square().mean() + model.encode_image(x).square().mean()
        loss.backward()
    grads = 0
    for (name, p), (_, q) in zip(plain.named_parameters(), ckpt.named_parameters()):
        if p.grad is None:
            assert q.grad is None, name
            continue
        grads += 1
        torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-5, msg=name)
    assert grads > 0


def test_cnn_batchnorm_stays_in_eval_while_training():
    tower = CLIPTower(TINY["rn"], freeze="clipself").train()
    bns = [m for m in tower.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns) and tower.training
    stats = [m.running_mean.clone() for m in bns]
    tower.dense_features(torch.randn(1, 3, 64, 64)).sum().backward()
    assert all(torch.equal(a, m.running_mean) for a, m in zip(stats, bns))
    free = CLIPTower(TINY["rn"], freeze="none", norm_eval=False).train()
    assert all(m.training for m in free.modules() if isinstance(m, torch.nn.BatchNorm2d))
