"""tools/demo.py on a CAT-Seg model: a randomly initialised toy CATSeg, any vocabulary."""
import json
import os

import pytest
import torch
from PIL import Image

from clipself.synthetic import BASE_CLASSES, NOVEL_CLASSES

from tests.helpers import REPO, demo_world, load_demo

CONFIG = os.path.join(REPO, "configs/Synthetic/catseg_toy.py")
RANDOM_INIT = [
    "model.clip.pretrained=null",
    "model.vocabulary.text_encoder.pretrained=null",
    "model.vocabulary.text_encoder.cache_dir=null",
]
VOCAB = [BASE_CLASSES[0], "grass", NOVEL_CLASSES[0], "pink moon"]  # "pink moon": not in the world


demo = load_demo("clipself_demo_catseg")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A random-weight toy CATSeg checkpoint and one synthetic image."""
    return demo_world(tmp_path_factory.mktemp("demo_catseg"), CONFIG, RANDOM_INIT, [(120, 160)])


def _main(world, *extra, output="out"):
    torch.manual_seed(0)
    return demo.main(["--config-file", CONFIG, "--input", *world["images"],
                      "--output", str(world["tmp"] / output), *extra, *world["opts"]])


def test_catseg_custom_vocabulary(world, capsys):
    rc = _main(world, "--vocabulary", ",".join(VOCAB), output="sem")
    assert rc == 0
    assert "4 classes (2 unseen); task semantic" in capsys.readouterr().out
    with open(world["tmp"] / "sem" / "scene0.json") as f:
        result = json.load(f)
    assert result["task"] == "semantic" and result["vocabulary"] == VOCAB
    # unseen = not annotated in training: the novel things and names outside the world
    assert result["unseen_classes"] == [NOVEL_CLASSES[0], "pink moon"]
    assert sum(r["pixels"] for r in result["classes"]) == 120 * 160
    for r in result["classes"]:
        assert VOCAB[r["class_id"]] == r["class"] and r["seen"] == (r["class"] in VOCAB[:2])
    w, h = Image.open(world["tmp"] / "sem" / "scene0.png").size
    assert abs(w / h - 160 / 120) < 0.02


def test_catseg_default_vocabulary_and_errors(world, capsys):
    assert _main(world, output="default") == 0
    with open(world["tmp"] / "default" / "scene0.json") as f:
        result = json.load(f)
    assert len(result["vocabulary"]) == 35 and len(result["unseen_classes"]) == 6
    assert _main(world, "--task", "panoptic", output="bad") != 0
    assert "segment semantically" in capsys.readouterr().err
