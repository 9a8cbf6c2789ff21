"""tools/demo.py: custom-vocabulary detection with a randomly initialised toy F-ViT."""
import errno
import json
import os

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances
from PIL import Image

from clipself.engine.records import detection_records
from clipself.structures import build_vocabulary
from clipself.synthetic import BASE_CLASSES, NOVEL_CLASSES

from tests.helpers import REPO, demo_world, load_demo

CONFIG = os.path.join(REPO, "configs/Synthetic/fvit_toy_clipself.py")
RANDOM_INIT = [  # no toy checkpoints needed
    "model.backbone.bottom_up.clip.pretrained=null",
    "model.roi_heads.box_predictor.vocabulary.text_encoder.pretrained=null",
]
VOCAB = ["red circle", "blue square", "green star"]  # novel, base, base in the toy world


demo = load_demo("clipself_demo")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A random-weight toy F-ViT checkpoint and two synthetic images."""
    return demo_world(tmp_path_factory.mktemp("demo"), CONFIG, RANDOM_INIT, [(120, 160), 144],
                      ["model.roi_heads.box_predictor.test_score_thresh=0.0"])


def _main(world, *extra, output="out", inputs=None):
    return demo.main(["--config-file", CONFIG, "--input", *(inputs or world["images"]),
                      "--output", str(world["tmp"] / output), *extra, *world["opts"]])


def test_custom_vocabulary_writes_pictures_and_detections(world, capsys):
    rc = _main(world, "--vocabulary", ",".join(VOCAB), "--base-classes", "blue square",
               "--confidence-threshold", "0", "--max-dets", "20")
    out = capsys.readouterr().out
    assert rc == 0
    assert "[1/2]" in out and "[2/2]" in out
    for path in world["images"]:
        stem = os.path.splitext(os.path.basename(path))[0]
        png = world["tmp"] / "out" / f"{stem}.png"
        w0, h0 = Image.open(path).size
        w, h = Image.open(png).size
        assert max(w, h) >= 500 and abs(w / h - w0 / h0) < 0.02  # scaled up, same shape
        with open(world["tmp"] / "out" / f"{stem}.json") as f:
            result = json.load(f)
        assert result["vocabulary"] == VOCAB and (result["height"], result["width"]) == (h0, w0)
        dets = result["detections"]
        assert 0 < len(dets) <= 20
        assert [d["score"] for d in dets] == sorted((d["score"] for d in dets), reverse=True)
        for d in dets:
            assert d["class"] in VOCAB and VOCAB[d["class_id"]] == d["class"]
            assert d["novel"] == (d["class"] != "blue square")  # --base-classes decides
            x0, y0, x1, y1 = d["box"]
            assert 0 <= x0 <= x1 <= w0 + 0.01 and 0 <= y0 <= y1 <= h0 + 0.01  # input pixels


def test_default_base_classes_come_from_training_vocabulary(world, capsys):
    txt = world["tmp"] / "vocab.txt"
    txt.write_text("\n".join(VOCAB) + "\n\n")
    broken = world["tmp"] / "broken.png"
    broken.write_bytes(b"not a png")
    rc = _main(world, "--vocabulary", str(txt), "--confidence-threshold", "0", "--max-dets", "30",
               output="out_default", inputs=[world["images"][0], str(broken)])
    assert rc != 0  # the unreadable image is reported, the readable one still processed
    captured = capsys.readouterr()
    assert "broken.png: error: cannot read the image" in captured.err
    assert "1 novel, 2 base" in captured.out
    stem = os.path.splitext(os.path.basename(world["images"][0]))[0]
    with open(world["tmp"] / "out_default" / f"{stem}.json") as f:
        result = json.load(f)
    assert result["novel_classes"] == ["red circle"]  # novel in synth_ovd_val's split
    assert all(d["novel"] == (d["class"] in NOVEL_CLASSES) for d in result["detections"])


def test_colors_and_records_helpers():
    assert demo.colors_for([True, False, True]) == [(1.0, 0.0, 0.0), (0.0, 0.0, 1.0),
                                                    (1.0, 0.0, 0.0)]
    inst = Instances((50, 60))
    inst.pred_boxes = Boxes(torch.tensor([[1.0, 2.0, 10.0, 20.0], [5.0, 5.0, 30.0, 40.0],
                                          [0.0, 0.0, 4.0, 4.0]]))
    inst.scores = torch.tensor([0.4, 0.9, 0.1])
    inst.pred_classes = torch.tensor([0, 1, 1])
    vocab = build_vocabulary(["cat", "dog"], seen_classes=["cat"], embeddings=torch.randn(3, 8))
    recs = detection_records(inst, vocab, score_thresh=0.2)
    got = [(r["class"], r["novel"], r["score"]) for r in recs]
    assert got == [("dog", True, 0.9), ("cat", False, 0.4)]
    assert recs[1]["box"] == [1.0, 2.0, 10.0, 20.0]
    assert len(detection_records(inst, vocab, max_dets=1)) == 1
    assert "red circle" in NOVEL_CLASSES and "blue square" in BASE_CLASSES
    assert demo.parse_names(" a , b c ") == ("a", "b c")
    assert demo.parse_names("", "--base-classes", allow_empty=True) == ()
    assert demo.output_stems(["a/x.png", "b/x.jpg", "y.png"]) == ["x", "x_2", "y"]
    picture = demo.draw_detections(np.zeros((40, 64, 3), np.uint8), recs)
    assert picture.shape == (320, 512, 3) and picture.dtype == np.uint8


def test_pictures_draw_one_box_per_object():
    """Class-agnostic NMS for drawing: of two classes on one object the better is drawn."""
    recs = [{"box": [0.0, 0.0, 10.0, 10.0], "score": 0.9, "class": "dog"},
            {"box": [1.0, 0.0, 10.0, 10.0], "score": 0.6, "class": "cat"},
            {"box": [30.0, 30.0, 40.0, 40.0], "score": 0.5, "class": "cat"}]
    assert [r["score"] for r in demo.drawn_records(recs, 0.5)] == [0.9, 0.5]
    assert demo.drawn_records(recs, None) == recs
    # a part of the object found as a box of its own (inside the best box): not drawn
    part = {"box": [0.0, 0.0, 4.0, 4.0], "score": 0.7, "class": "cat"}
    assert [r["score"] for r in demo.drawn_records(recs + [part], 0.3, 0.6)] == [0.9, 0.5]
    assert [r["score"] for r in demo.drawn_records(recs + [part], 0.3)] == [0.9, 0.7, 0.5]
    args = demo._parser().parse_args(["--config-file", "c.py", "--input", "a.png",
                                      "--output", "o"])
    assert args.agnostic_nms and args.nms_iou == 0.25 and args.nms_containment == 0.5
    assert not demo._parser().parse_args(["--config-file", "c.py", "--input", "a.png",
                                          "--output", "o", "--no-agnostic-nms"]).agnostic_nms


def test_errors_are_reported(world, capsys):
    rc = _main(world, "--vocabulary", ",".join(VOCAB), "--base-classes", "blue square,pink moon")
    assert rc != 0 and "pink moon" in capsys.readouterr().err
    rc = _main(world, "--vocabulary", ",".join(VOCAB),
               inputs=[world["images"][0], str(world["tmp"] / "nope.png")])
    assert rc != 0 and "nope.png" in capsys.readouterr().err
    rc = _main(world, "--vocabulary", " ")
    assert rc != 0 and "empty" in capsys.readouterr().err
    rc = demo.main(["--config-file", CONFIG, "--input", world["images"][0], "--output",
                    str(world["tmp"] / "o"), "--vocabulary", "a,b", *RANDOM_INIT])
    assert rc != 0 and "train.init_checkpoint=" in capsys.readouterr().err


def test_full_disk_is_a_clear_error(world, capsys, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(args[0]) if args else None)

    monkeypatch.setattr(Image.Image, "save", full)
    assert _main(world, "--vocabulary", ",".join(VOCAB), output="full") == 1
    err = capsys.readouterr().err
    assert "cannot write to" in err and "No space left on device" in err
    out = world["tmp"] / "full"
    assert not out.exists() or not [p for p in os.listdir(out) if p.endswith(".tmp")]
