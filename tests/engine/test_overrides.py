import pytest
import torch
from detectron2.config import LazyCall as L
from omegaconf import OmegaConf

from clipself.engine import apply_overrides, resolve_device


class _Head(torch.nn.Module):
    def __init__(self, num_classes: int, batch_size_per_image: int = 512):
        super().__init__()
        self.num_classes = num_classes
        self.batch_size_per_image = batch_size_per_image


def _cfg():
    return OmegaConf.create(
        {
            "train": {"max_iter": 100, "output_dir": "./output", "amp": {"enabled": "auto"}},
            "model": L(_Head)(num_classes=80),
        }
    )


def test_existing_keys_are_overridden_with_hydra_grammar():
    cfg = apply_overrides(
        _cfg(), ["train.max_iter=10", "model.num_classes=65", 'train.output_dir="/tmp/a=b"']
    )
    assert cfg.train.max_iter == 10
    assert cfg.model.num_classes == 65
    assert cfg.train.output_dir == "/tmp/a=b"


def test_typo_is_rejected_with_a_suggestion():
    with pytest.raises(KeyError, match=r"train\.max_iters.*Did you mean: train\.max_iter"):
        apply_overrides(_cfg(), ["train.max_iters=10"])
    with pytest.raises(KeyError, match="does not exist"):
        apply_overrides(_cfg(), ["nothing.like.this=1"])


def test_keyword_of_lazy_target_is_accepted():
    cfg = apply_overrides(_cfg(), ["model.batch_size_per_image=64"])
    assert cfg.model.batch_size_per_image == 64
    with pytest.raises(KeyError):
        apply_overrides(_cfg(), ["model.batch_size_per_imag=64"])


def test_plus_adds_a_new_key():
    cfg = apply_overrides(_cfg(), ["+train.new_key=3"])
    assert cfg.train.new_key == 3


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            resolve_device("cuda")


def test_values_are_type_checked_before_anything_is_built():
    with pytest.raises(ValueError, match=r"train\.max_iter=abc: expected int .*got str 'abc'"):
        apply_overrides(_cfg(), ["train.max_iter=abc"])
    with pytest.raises(ValueError, match="expected int"):
        apply_overrides(_cfg(), ["train.max_iter=1e3"])  # a float for an int key
    with pytest.raises(ValueError, match="expected int"):
        apply_overrides(_cfg(), ["model.batch_size_per_image=many"])  # the target's default
    with pytest.raises(ValueError, match="expected str"):
        apply_overrides(_cfg(), ["train.output_dir=[1,2]"])
    with pytest.raises(ValueError, match="expected dict"):
        apply_overrides(_cfg(), ["train.amp=3"])
    cfg = apply_overrides(_cfg(), [
        "train.amp.enabled=true",  # "auto" may become a bool
        "train.output_dir=null",  # null may replace a str
        "+train.lr=abc",  # new keys are not checked
    ])
    assert cfg.train.amp.enabled is True and cfg.train.output_dir is None
    cfg = apply_overrides(OmegaConf.create({"lr": 0.1, "sizes": [1, 2]}), ["lr=1", "sizes=[3]"])
    assert cfg.lr == 1 and list(cfg.sizes) == [3]
