"""OpenVocabPredictor: any image, any vocabulary, for F-ViT, panoptic, CAT-Seg and CLIPSelf
configs (random toy weights, no downloads)."""
import dataclasses
import os

import numpy as np
import pytest
import torch
from PIL import Image

from clipself.engine import OpenVocabPredictor
from clipself.engine.predictor import to_rgb_array
from clipself.modeling.dense_ops import pool_boxes
from clipself.structures import Vocabulary
from clipself.synthetic import generate_scene

from tests.helpers import REPO, save_random_checkpoint

FVIT = os.path.join(REPO, "configs/Synthetic/fvit_toy_clipself.py")
FVIT_INIT = ["model.backbone.bottom_up.clip.pretrained=null",
             "model.roi_heads.box_predictor.vocabulary.text_encoder.pretrained=null",
             "model.roi_heads.box_predictor.test_score_thresh=0.0"]
CATSEG = os.path.join(REPO, "configs/Synthetic/catseg_toy.py")
CATSEG_INIT = ["model.clip.pretrained=null", "model.vocabulary.text_encoder.pretrained=null",
               "model.vocabulary.text_encoder.cache_dir=null"]
CLIPSELF = os.path.join(REPO, "configs/Synthetic/clipself_toy_patches.py")
VOCAB = ["red circle", "blue square", "green star"]


@pytest.fixture(scope="module")
def scene():
    return generate_scene(0, "val", 0, image_size=(96, 128))["image"]  # (96, 128, 3) uint8


@pytest.fixture(scope="module")
def fvit(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("predictor") / "fvit.pth"
    save_random_checkpoint(FVIT, FVIT_INIT, ckpt)
    torch.manual_seed(0)
    return OpenVocabPredictor.from_config(FVIT, checkpoint=str(ckpt), overrides=FVIT_INIT)


def test_images_of_any_kind(tmp_path, scene):
    path = tmp_path / "s.png"
    Image.fromarray(scene).save(path)
    assert np.array_equal(to_rgb_array(str(path)), scene)
    pil = Image.fromarray(scene)
    for mode in ("L", "RGBA", "P", "CMYK"):
        assert to_rgb_array(pil.convert(mode)).shape == (96, 128, 3)
    assert to_rgb_array(scene[:, :, 0]).shape == (96, 128, 3)  # grey (H, W)
    assert to_rgb_array(np.dstack([scene, np.full((96, 128), 255, np.uint8)])).shape[2] == 3
    with pytest.raises(ValueError, match="uint8"):
        to_rgb_array(scene.astype(np.float32))
    with pytest.raises(ValueError, match="folder"):
        to_rgb_array(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nope.png"):
        to_rgb_array(str(tmp_path / "nope.png"))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        to_rgb_array(str(tmp_path / "broken.png"))


def test_fvit_detects_any_vocabulary(fvit, scene, tmp_path):
    assert fvit.outputs == ("instances",)
    default = fvit.vocabulary
    assert default.num_classes == 30 and len(default.unseen_classes) == 6
    out = fvit(scene, vocabulary=VOCAB)
    inst = out["instances"]
    assert inst.image_size == (96, 128) and len(inst) > 0
    assert int(inst.pred_classes.max()) < 3 and fvit.vocabulary.class_names == tuple(VOCAB)
    # base / novel from the training vocabulary: red circle is novel in the toy world
    assert fvit.vocabulary.unseen_classes == ("red circle",)
    assert fvit.make_vocabulary(VOCAB) is fvit.vocabulary  # embedded once, then reused
    boxes = inst.pred_boxes.tensor
    assert float(boxes[:, 2].max()) <= 128 + 1e-3 and float(boxes[:, 3].max()) <= 96 + 1e-3
    # paths, PIL images and arrays give the same; a batch gives what single calls give
    path = tmp_path / "s.png"
    Image.fromarray(scene).save(path)
    both = fvit.batch([str(path), Image.fromarray(scene)], batch_size=2)
    for o in both:
        torch.testing.assert_close(o["instances"].scores, inst.scores)
    # a Vocabulary object, then back to the config's own
    emb = torch.nn.functional.normalize(torch.randn(2, 128), dim=-1)
    mine = Vocabulary(("a", "b"), emb, background=emb[0])
    assert fvit(scene, vocabulary=mine)["instances"].pred_classes.max() < 2
    fvit.set_vocabulary(None)
    assert fvit.vocabulary is default
    with pytest.raises(TypeError, match="list of class names"):
        fvit(scene, vocabulary="red circle")
    with pytest.raises(TypeError, match="CLIPSelf config"):
        fvit.dense_features(scene)


def test_weights_are_required_unless_asked_for():
    with pytest.raises(ValueError, match="train.init_checkpoint=PATH"):
        OpenVocabPredictor.from_config(FVIT, overrides=FVIT_INIT)
    with pytest.raises(FileNotFoundError, match="config file"):
        OpenVocabPredictor.from_config("configs/nope.py")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        OpenVocabPredictor.from_config(FVIT, checkpoint="missing.pth", overrides=FVIT_INIT)
    p = OpenVocabPredictor.from_config(CATSEG, overrides=CATSEG_INIT, allow_random_init=True)
    assert p.outputs == ("sem_seg",)
    torch.manual_seed(0)
    out = p(np.zeros((40, 60, 3), np.uint8), vocabulary=["grass", "sky", "pink moon"])
    assert out["sem_seg"].shape == (3, 40, 60)
    assert p.vocabulary.unseen_classes == ("pink moon",) and p.vocabulary.num_templates == 1


def test_clipself_dense_and_region_features(scene):
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="allow_random_init"):  # a random tower, not on purpose
        OpenVocabPredictor.from_config(CLIPSELF, overrides=["model.student.pretrained=null"])
    p = OpenVocabPredictor.from_config(CLIPSELF, overrides=["model.student.pretrained=null"],
                                       allow_random_init=True)
    assert p.outputs == () and p.vocabulary is None
    dense = p.dense_features(scene)  # 128 px test size, patch 8: 16 x 16, image covers 12 rows
    assert dense.shape == (128, 12, 16)
    torch.testing.assert_close(dense.norm(dim=0), torch.ones(12, 16))
    boxes = [[0, 0, 64, 48], [32, 16, 128, 96]]
    feats = p.region_features(scene, boxes)
    assert feats.shape == (2, 128)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(2))
    # = RoI pooling of the dense map at the resized box (scale 1: the longest side is 128)
    ref = pool_boxes(dense[None], [torch.tensor(boxes, dtype=torch.float32)], stride=8)
    torch.testing.assert_close(feats, torch.nn.functional.normalize(ref, dim=-1))
    scores = p.classify_regions(scene, boxes, VOCAB)
    assert scores.shape == (2, 3) and float(scores.abs().max()) <= 1 + 1e-5
    # probabilities as the text tower gives them: the toy CLIP is softmax-trained (no bias)
    vocab = p.make_vocabulary(VOCAB)
    assert vocab.logit_bias is None and vocab.logit_scale > 0
    probs = p.classify_regions(scene, boxes, VOCAB, probabilities=True)
    torch.testing.assert_close(probs, torch.softmax(vocab.logit_scale * scores, dim=-1))
    siglip = dataclasses.replace(vocab, logit_scale=10.0, logit_bias=-2.0)
    probs = p.classify_regions(scene, boxes, siglip, probabilities=True)
    torch.testing.assert_close(probs, torch.sigmoid(10.0 * scores - 2.0))
    assert probs.argmax(-1).tolist() == scores.argmax(-1).tolist()
    with pytest.raises(TypeError, match="CLIPSelf"):
        p(scene)


def test_tiny_and_thin_images(fvit):
    for shape in ((1, 1, 3), (3, 200, 3), (7, 5, 3)):
        out = fvit(np.full(shape, 128, np.uint8), vocabulary=VOCAB)["instances"]
        assert out.image_size == shape[:2]
        if len(out):
            boxes = out.pred_boxes.tensor
            assert (boxes[:, 2] <= shape[1]).all() and (boxes[:, 3] <= shape[0]).all()
