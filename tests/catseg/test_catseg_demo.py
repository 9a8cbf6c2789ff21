"""tools/demo.py on a CAT-Seg model: a randomly initialised toy CATSeg, any vocabulary."""
import importlib.util
import json
import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from PIL import Image

from clipself.engine import apply_overrides
from clipself.synthetic import BASE_CLASSES, NOVEL_CLASSES, generate_scene

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs/Synthetic/catseg_toy.py")
RANDOM_INIT = [
    "model.clip.pretrained=null",
    "model.vocabulary.text_encoder.pretrained=null",
    "model.vocabulary.text_encoder.cache_dir=null",
]
VOCAB = [BASE_CLASSES[0], "grass", NOVEL_CLASSES[0], "pink moon"]  # "pink moon": not in the world


def _load_demo():
    spec = importlib.util.spec_from_file_location("clipself_demo_catseg",
                                                  os.path.join(ROOT, "tools", "demo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_demo()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo_catseg")
    cfg = apply_overrides(LazyConfig.load(CONFIG), list(RANDOM_INIT))
    torch.manual_seed(0)
    ckpt = tmp / "random_catseg.pth"
    torch.save({"model": instantiate(cfg.model).state_dict()}, ckpt)
    path = tmp / "scene.png"
    Image.fromarray(generate_scene(0, "val", 0, image_size=(120, 160))["image"]).save(path)
    return {"tmp": tmp, "image": str(path), "opts": [f"train.init_checkpoint={ckpt}",
                                                     *RANDOM_INIT]}


def _main(world, *extra, output="out"):
    torch.manual_seed(0)
    return demo.main(["--config-file", CONFIG, "--input", world["image"],
                      "--output", str(world["tmp"] / output), *extra, *world["opts"]])


def test_catseg_custom_vocabulary(world, capsys):
    rc = _main(world, "--vocabulary", ",".join(VOCAB), output="sem")
    assert rc == 0
    assert "4 classes (2 unseen); task semantic" in capsys.readouterr().out
    with open(world["tmp"] / "sem" / "scene.json") as f:
        result = json.load(f)
    assert result["task"] == "semantic" and result["vocabulary"] == VOCAB
    # unseen = not annotated in training: the novel things and names outside the world
    assert result["unseen_classes"] == [NOVEL_CLASSES[0], "pink moon"]
    assert sum(r["pixels"] for r in result["classes"]) == 120 * 160
    for r in result["classes"]:
        assert VOCAB[r["class_id"]] == r["class"] and r["seen"] == (r["class"] in VOCAB[:2])
    w, h = Image.open(world["tmp"] / "sem" / "scene.png").size
    assert abs(w / h - 160 / 120) < 0.02


def test_catseg_default_vocabulary_and_errors(world, capsys):
    assert _main(world, output="default") == 0
    with open(world["tmp"] / "default" / "scene.json") as f:
        result = json.load(f)
    assert len(result["vocabulary"]) == 35 and len(result["unseen_classes"]) == 6
    assert _main(world, "--task", "panoptic", output="bad") != 0
    assert "segment semantically" in capsys.readouterr().err
