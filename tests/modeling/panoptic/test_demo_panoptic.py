"""tools/demo.py on an open-vocabulary panoptic model: a randomly initialised toy OVMaskFormer."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from clipself.engine import OpenVocabPredictor
from clipself.engine.records import segment_records, semantic_records
from clipself.structures import build_vocabulary

from tests.helpers import REPO, demo_world, load_demo, save_random_checkpoint

CONFIG = os.path.join(REPO, "configs/Synthetic/panoptic_toy_clipself.py")
RANDOM_INIT = [  # no toy checkpoints needed
    "model.backbone.clip.pretrained=null",
    "model.vocabulary.text_encoder.pretrained=null",
    "model.vocabulary.text_encoder.cache_dir=null",
]
VOCAB = ["red circle", "blue square", "grass", "pink moon"]  # "pink moon": not in the toy world
THINGS = ["red circle", "pink moon"]
UNSEEN = ["red circle", "pink moon"]  # a novel shape (void in training) and an unknown name


demo = load_demo("clipself_demo_panoptic")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A random-weight toy OVMaskFormer checkpoint and two synthetic images."""
    # random weights: let every query that wins pixels become a segment
    return demo_world(tmp_path_factory.mktemp("demo_panoptic"), CONFIG, RANDOM_INIT,
                      [(120, 160), 128], ["model.overlap_threshold=0.0"])


def _main(world, *extra, output="out"):
    torch.manual_seed(0)  # each run draws a new random toy text tower (pretrained=null)
    return demo.main(["--config-file", CONFIG, "--input", *world["images"],
                      "--output", str(world["tmp"] / output), *extra, *world["opts"]])


def _results(world, output):
    for path in world["images"]:
        stem = os.path.splitext(os.path.basename(path))[0]
        w0, h0 = Image.open(path).size
        w, h = Image.open(world["tmp"] / output / f"{stem}.png").size
        assert max(w, h) >= 500 and abs(w / h - w0 / h0) < 0.02  # scaled up, same shape
        with open(world["tmp"] / output / f"{stem}.json") as f:
            result = json.load(f)
        assert (result["height"], result["width"]) == (h0, w0)
        assert result["vocabulary"] == VOCAB
        assert result["thing_classes"] == THINGS and result["unseen_classes"] == UNSEEN
        yield result


def test_panoptic_custom_vocabulary(world, capsys):
    rc = _main(world, "--vocabulary", ",".join(VOCAB), "--thing-classes", ",".join(THINGS),
               "--task", "panoptic", output="pan")
    out = capsys.readouterr().out
    assert rc == 0
    assert "2 things, 2 stuff; 2 unseen, 2 seen" in out and "[2/2]" in out
    n_segments = 0
    for result in _results(world, "pan"):
        assert result["task"] == "panoptic"
        segs = result["segments"]
        n_segments += len(segs)
        assert [s["id"] for s in segs] == sorted({s["id"] for s in segs})
        assert sum(s["area"] for s in segs) <= result["height"] * result["width"]
        for s in segs:
            assert s["class"] in VOCAB and VOCAB[s["class_id"]] == s["class"]
            assert s["isthing"] == (s["class"] in THINGS)  # --thing-classes decides
            assert s["seen"] == (s["class"] not in UNSEEN)  # seen in training
            assert s["area"] > 0
    assert n_segments > 0


def test_semantic_custom_vocabulary(world, capsys):
    rc = _main(world, "--vocabulary", ",".join(VOCAB), "--thing-classes", ",".join(THINGS),
               "--task", "semantic", output="sem")
    assert rc == 0 and "[2/2]" in capsys.readouterr().out
    for result in _results(world, "sem"):
        assert result["task"] == "semantic"
        classes = result["classes"]
        assert classes and sum(c["pixels"] for c in classes) == result["height"] * result["width"]
        assert [c["pixels"] for c in classes] == sorted((c["pixels"] for c in classes),
                                                        reverse=True)
        for c in classes:
            assert c["class"] in VOCAB and VOCAB[c["class_id"]] == c["class"]
            assert c["seen"] == (c["class"] not in UNSEEN)


def test_defaults_come_from_training_vocabulary(world):
    train_vocab = world["model"].vocabulary
    assert len(train_vocab.class_names) == 35 and int(train_vocab.seen_mask.sum()) == 29
    torch.manual_seed(0)
    predictor = OpenVocabPredictor.from_config(CONFIG, overrides=world["opts"])
    vocab = predictor.make_vocabulary(VOCAB)
    # things of the toy world: the 30 shapes; "grass" is stuff, "pink moon" unknown -> stuff
    assert vocab.thing_classes == ("red circle", "blue square")
    assert vocab.seen_classes == ("blue square", "grass")


def test_segmentation_helpers():
    names = ["cat", "sky", "moon"]
    vocab = build_vocabulary(names, seen_classes=["cat", "sky"], thing_classes=["cat", "moon"],
                             embeddings=torch.randn(4, 8))
    meta = demo.segmentation_metadata(vocab)
    assert meta.stuff_classes == meta.thing_classes == ["cat", "sky", "*moon"]
    assert len(meta.stuff_colors) == 3 and len(set(meta.stuff_colors)) == 3
    seg = torch.zeros((40, 64), dtype=torch.int32)
    seg[:20] = 1
    seg[20:, :10] = 2
    info = [{"id": 2, "category_id": 2, "isthing": True},
            {"id": 1, "category_id": 1, "isthing": False}]
    recs = segment_records(seg, info, vocab)
    assert recs == [
        {"id": 1, "class": "sky", "class_id": 1, "isthing": False, "area": 20 * 64, "seen": True},
        {"id": 2, "class": "moon", "class_id": 2, "isthing": True, "area": 20 * 10,
         "seen": False}]
    labels = torch.zeros((40, 64), dtype=torch.int64)
    labels[:, :16] = 2
    assert semantic_records(labels, vocab) == [
        {"class": "cat", "class_id": 0, "pixels": 40 * 48, "seen": True},
        {"class": "moon", "class_id": 2, "pixels": 40 * 16, "seen": False}]
    image = np.zeros((40, 64, 3), np.uint8)
    for picture in (demo.draw_panoptic(image, seg, info, meta),
                    demo.draw_panoptic(image, torch.zeros_like(seg), [], meta),
                    demo.draw_semantic(image, labels, meta)):
        assert picture.shape == (320, 512, 3) and picture.dtype == np.uint8
    assert "area" not in info[0]  # the Visualizer drew copies


def test_errors_are_reported(world, capsys):
    rc = _main(world, "--vocabulary", ",".join(VOCAB), "--thing-classes", "pink moon,sky")
    assert rc != 0 and "--thing-classes not in the vocabulary: ['sky']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _main(world, "--task", "instance")
    capsys.readouterr()


def test_segmentation_flags_rejected_for_fvit(world, capsys):
    fvit_config = os.path.join(REPO, "configs/Synthetic/fvit_toy_clipself.py")
    fvit_init = ["model.backbone.bottom_up.clip.pretrained=null",
                 "model.roi_heads.box_predictor.vocabulary.text_encoder.pretrained=null"]
    ckpt = world["tmp"] / "random_fvit.pth"
    save_random_checkpoint(fvit_config, fvit_init, ckpt)
    rc = demo.main(["--config-file", fvit_config, "--input", world["images"][0], "--output",
                    str(world["tmp"] / "fvit"), "--task", "semantic",
                    f"train.init_checkpoint={ckpt}", *fvit_init])
    err = capsys.readouterr().err
    assert rc != 0 and "apply to panoptic models" in err and "FViT" in err
