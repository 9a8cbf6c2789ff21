"""Every shipped config loads, and its model, optimizer and LR schedule instantiate.

New config files are picked up automatically. Large real-scale models are shrunk by the
overrides in SHRINK (glob pattern -> overrides), applied through the same validated override path
as train_net.py.
"""
import fnmatch
import glob
import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from clipself.engine import apply_overrides

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
CONFIG_DIR = os.path.join(ROOT, "configs")

#: glob (relative to configs/) -> overrides that shrink the model for a CPU test
SHRINK = {
    # random weights instead of downloading the authors' base checkpoints
    "CLIPSelf/*": ["model.student.pretrained=null"],
    "common/models/clipself.py": ["model.student.pretrained=null"],
    "Synthetic/clipself_*": ["model.student.pretrained=null"],
    "Synthetic/region_eval_*": ["model.student.pretrained=null"],
    # F-ViT: random towers, one prompt template
    "*fvit*": [
        "model.backbone.bottom_up.clip.pretrained=null",
        "model.roi_heads.box_predictor.vocabulary.text_encoder.pretrained=null",
        "model.roi_heads.box_predictor.vocabulary.text_encoder.templates=single",
    ],
    # real-scale F-ViT: a 2-class vocabulary (a random EVA02-L text tower needs minutes of CPU
    # for LVIS's 1203 class prompts; the dataset-vocabulary path is covered by Synthetic/fvit_*)
    "FViT/*": [
        "model.roi_heads.box_predictor.vocabulary.dataset_name=null",
        "+model.roi_heads.box_predictor.vocabulary.class_names=[cat,dog]",
        "model.roi_heads.num_classes=2",
    ],
    "*ov_maskformer*": [
        "model.backbone.clip.pretrained=null",
        "model.vocabulary.text_encoder.pretrained=null",
    ],
    # real-scale panoptic: a 2-class vocabulary (a random EVA02-L text tower needs a minute of
    # CPU for ADE's 150 class names; the dataset-vocabulary path is covered by the toy configs)
    "Panoptic/*": [
        "model.vocabulary.dataset_name=null",
        "+model.vocabulary.class_names=[cat,dog]",
        "model.criterion.num_classes=2",
    ],
    "*panoptic_toy*": [
        "model.backbone.clip.pretrained=null",
        "model.vocabulary.text_encoder.pretrained=null",
    ],
    # CAT-Seg: random towers, one template (a random ViT-L text tower needs minutes of CPU for
    # 171 classes x 80 templates; the template path is covered by tests/catseg)
    "*catseg*": [
        "model.clip.pretrained=null",
        "model.vocabulary.text_encoder.pretrained=null",
        "model.vocabulary.templates=single",
        "model.aggregator.prompt_channels=1",
    ],
    "common/models/catseg.py": [
        "model.test_vocabulary=null",  # it follows dataloader.test, absent here
        "model.vocabulary.dataset_name=null",
        "+model.vocabulary.class_names=[cat,dog]",
    ],
    "CATSeg/*": [
        "model.vocabulary.dataset_name=null",
        "+model.vocabulary.class_names=[cat,dog]",
        "model.test_vocabulary.dataset_name=null",
        "+model.test_vocabulary.class_names=[cat,dog,sky]",
    ],
    # the SigLIP2 tokenizer comes from the Hugging Face hub, unreachable here: a CLIP text tower
    # of the same width (768) stands in (the SigLIP text path: tests/modeling/test_text_families)
    "FViT/fvit_siglip2_*": [
        "model.roi_heads.box_predictor.vocabulary.text_encoder.model_name=ViT-L-14",
    ],
    "common/models/fvit.py": [
        "model.roi_heads.box_predictor.vocabulary.dataset_name=null",
        "+model.roi_heads.box_predictor.vocabulary.class_names=[cat,dog]",
        "model.roi_heads.num_classes=2",
    ],
}


def _config_files():
    paths = sorted(glob.glob(os.path.join(CONFIG_DIR, "**", "*.py"), recursive=True))
    return [os.path.relpath(p, CONFIG_DIR) for p in paths]


def _defines(rel, key):
    return key in LazyConfig.load(os.path.join(CONFIG_DIR, rel))


def _load(rel):
    cfg = LazyConfig.load(os.path.join(CONFIG_DIR, rel))
    overrides = [o for pat, ovs in SHRINK.items() if fnmatch.fnmatch(rel, pat) for o in ovs]
    return apply_overrides(cfg, overrides)


MODEL_CONFIGS = [c for c in _config_files() if _defines(c, "model")]
TRAIN_CONFIGS = [c for c in MODEL_CONFIGS if not c.startswith("common")]


def test_configs_are_found():
    assert "Synthetic/faster_rcnn_R18_FPN_base.py" in TRAIN_CONFIGS
    assert "common/models/faster_rcnn_fpn.py" in MODEL_CONFIGS


#: configs that only switch the test dataset of a parent (their model is the parent's, whose test
#: vocabulary follows the dataset): checked by test_training_config_is_complete, not rebuilt here
DATASET_SWITCHES = ["CATSeg/eval/*"]


@pytest.mark.parametrize(
    "rel", [c for c in MODEL_CONFIGS if not any(fnmatch.fnmatch(c, p) for p in DATASET_SWITCHES)]
)
def test_model_instantiates(rel):
    cfg = _load(rel)
    model = instantiate(cfg.model)
    assert isinstance(model, torch.nn.Module)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("rel", TRAIN_CONFIGS)
def test_training_config_is_complete(rel):
    cfg = _load(rel)
    for key in ("model", "optimizer", "lr_multiplier", "train", "dataloader"):
        assert key in cfg, f"{rel} has no top-level '{key}'"
    for key in ("train", "test"):
        assert key in cfg.dataloader, f"{rel} has no dataloader.{key}"
    # the schedule is a valid multiplier over the whole run
    sched = instantiate(cfg.lr_multiplier)
    values = [sched(t / 10) for t in range(10)]
    assert all(0 <= v <= 1.0 + 1e-6 for v in values)
    # the optimizer builds on the model
    cfg.optimizer.params.model = torch.nn.Linear(2, 2)
    assert isinstance(instantiate(cfg.optimizer), torch.optim.Optimizer)
    # every dataset named by the config is registered
    from detectron2.data import DatasetCatalog

    for split in ("train", "test"):
        names = cfg.dataloader[split].dataset.names
        for name in [names] if isinstance(names, str) else names:
            assert name in DatasetCatalog.list(), f"{rel}: dataset {name} is not registered"
