"""The one Vocabulary: validation, views, builders from stored embeddings or a text encoder,
the cosine classifier, the scores and the synonym conventions."""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipself.structures import (
    CLIP_LOGIT_SCALE,
    Vocabulary,
    build_vocabulary,
    class_synonyms,
    cosine_logits,
    parse_class_list,
    seen_by_synonyms,
    vocabulary_scores,
)

D = 8


def test_cosine_logits_are_scaled_cosines():
    x = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    emb = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.6, 0.8]])  # any norm
    out = cosine_logits(x, emb, torch.tensor(50.0))
    expected = 50 * torch.tensor([[0.6, 0.8, 1.0], [0.0, -1.0, -0.8]])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    batched = cosine_logits(torch.randn(2, 3, 2), emb)  # (B, Q, D) queries
    assert batched.shape == (2, 3, 3) and float(batched.abs().max()) <= 1 + 1e-6


def test_vocabulary_scores_sigmoid_with_a_bias_softmax_without():
    cos = torch.tensor([[0.3, 0.1, -0.2], [0.05, 0.25, 0.0]])
    # SigLIP: sigmoid(scale * cos + bias), each class on its own
    sig = vocabulary_scores(cos, 10.0, -2.0)
    assert sig[0, 0].item() == pytest.approx(1 / (1 + np.exp(-1.0)))  # 10 * 0.3 - 2 = 1
    assert sig[1, 2].item() == pytest.approx(1 / (1 + np.exp(2.0)))
    # CLIP: softmax(scale * cos) over the classes; scale 100 when unknown
    soft = vocabulary_scores(cos, 50.0)
    e = np.exp(50 * np.array([0.3, 0.1, -0.2]))
    torch.testing.assert_close(soft[0], torch.tensor(e / e.sum(), dtype=torch.float32))
    torch.testing.assert_close(soft.sum(-1), torch.ones(2))
    assert CLIP_LOGIT_SCALE == 100.0
    torch.testing.assert_close(vocabulary_scores(cos), torch.softmax(100 * cos, dim=-1))
    # neither scale nor bias changes the argmax
    assert sig.argmax(-1).tolist() == soft.argmax(-1).tolist() == cos.argmax(-1).tolist()
    assert vocabulary_scores(cos.half(), 10.0, -2.0).dtype == torch.float32


def test_vocabulary_logit_scale_and_bias():
    v = Vocabulary(class_names=("a", "b"), embeddings=torch.eye(2))
    assert v.logit_scale is None and v.logit_bias is None  # stored embeddings: unknown
    s = dataclasses.replace(v, logit_scale=torch.tensor(10.0), logit_bias=torch.tensor([-2.0]))
    assert type(s.logit_scale) is float and s.logit_scale == 10.0 and s.logit_bias == -2.0
    cos = torch.tensor([[0.3, -0.1]])
    torch.testing.assert_close(s.scores(cos), vocabulary_scores(cos, 10.0, -2.0))
    torch.testing.assert_close(v.scores(cos), torch.softmax(100 * cos, dim=-1))
    with pytest.raises(ValueError, match="multiplier"):
        Vocabulary(class_names=("a",), embeddings=torch.ones(1, 2), logit_scale=-1.0)
    with pytest.raises(ValueError, match="logit_bias must be a number"):
        Vocabulary(class_names=("a",), embeddings=torch.ones(1, 2), logit_bias=torch.ones(2))


def test_vocabulary_validates_and_defaults():
    v = Vocabulary(("cat", "dog"), F.normalize(torch.randn(2, D), dim=-1))
    assert v.num_classes == 2 and v.num_templates == 1 and v.dim == D
    assert v.seen_mask.tolist() == [True, True] and v.thing_ids == (0, 1)
    assert v.synonyms == (("cat",), ("dog",)) and v.unseen_classes == ()
    assert v.template_embeddings.shape == (2, 1, D)
    with pytest.raises(ValueError, match="no background"):
        v.with_background()
    with pytest.raises(ValueError, match="empty"):
        Vocabulary((), torch.zeros(0, D))
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary(("a", "a"), torch.randn(2, D))
    with pytest.raises(ValueError, match=r"\(2, D\)"):
        Vocabulary(("a", "b"), torch.randn(3, D))
    with pytest.raises(ValueError, match="thing ids"):
        Vocabulary(("a", "b"), torch.randn(2, D), thing_ids=[5])
    with pytest.raises(ValueError, match="seen_mask"):
        Vocabulary(("a", "b"), torch.randn(2, D), seen_mask=torch.ones(3, dtype=torch.bool))


def test_per_template_vocabulary_views():
    emb = F.normalize(torch.randn(3, 4, D), dim=-1)
    v = Vocabulary(("a", "b", "c"), emb, thing_ids=[2])
    assert v.num_templates == 4 and v.template_embeddings is emb
    torch.testing.assert_close(v.class_embeddings, F.normalize(emb.mean(1), dim=-1))
    assert v.thing_mask.tolist() == [False, False, True] and v.thing_classes == ("c",)


def test_builders_from_stored_embeddings(tmp_path):
    names = ["cat", "dog"]
    d = {"dog": torch.ones(D) * 2, "background": torch.ones(D), "cat": torch.arange(D).float()}
    path = tmp_path / "emb.pt"
    torch.save(d, path)
    v = build_vocabulary(names, seen_classes=["dog"], embeddings=str(path))
    assert v.embeddings.shape == (2, D) and v.with_background().shape == (3, D)
    torch.testing.assert_close(v.with_background().norm(dim=1), torch.ones(3))
    torch.testing.assert_close(v.embeddings[0], F.normalize(d["cat"], dim=0))
    assert v.unseen_classes == ("cat",) and v.seen_classes == ("dog",)
    # (K + 1, D): background last (the authors' layout); .npy files
    rows = torch.randn(3, D)
    np.save(tmp_path / "emb.npy", rows.numpy())
    v2 = build_vocabulary(names, embeddings=str(tmp_path / "emb.npy"))
    torch.testing.assert_close(v2.background, F.normalize(rows[2], dim=0))
    # (K, D) without background when none is asked for; (K, P, D) per template
    assert build_vocabulary(names, embeddings=rows[:2], background=False).background is None
    per = build_vocabulary(names, embeddings=torch.randn(2, 5, D), per_template=True)
    assert per.num_templates == 5
    assert build_vocabulary(names, embeddings=rows[:2], per_template=True).num_templates == 1
    with pytest.raises(KeyError, match="lacks 1"):
        build_vocabulary(["cat", "cow"], embeddings=d)
    with pytest.raises(ValueError, match="seen classes not in"):
        build_vocabulary(names, seen_classes=["cow"], embeddings=d)
    with pytest.raises(ValueError, match="duplicate"):
        build_vocabulary(["cat", "cat"], embeddings=d)
    with pytest.raises(FileNotFoundError, match="dump_text_embeddings"):
        build_vocabulary(names, embeddings=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="do not fit 2 classes"):
        build_vocabulary(names, embeddings=torch.ones(5, D))
    with pytest.raises(ValueError, match="no background row"):
        build_vocabulary(names, embeddings=torch.ones(2, D))
    with pytest.raises(ValueError, match="text_encoder"):
        build_vocabulary(names)


class _Encoder:
    """A text encoder with the TextClassifier interface, recording its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, entries, background=False):
        self.calls.append(("embed", entries, background))
        return torch.randn(len(entries) + int(background), D) * 3

    def embed_per_template(self, entries, templates=None):
        self.calls.append(("per_template", entries, templates))
        return torch.randn(len(entries), 2, D) * 3


def test_builders_with_a_text_encoder():
    enc = _Encoder()
    v = build_vocabulary(["cat", "dog"], synonyms=[["cat", "kitty"], ["dog"]],
                         thing_classes=["dog"], text_encoder=enc)
    assert enc.calls == [("embed", [["cat", "kitty"], ["dog"]], True)]
    assert v.background is not None and v.thing_ids == (1,)
    assert v.synonyms == (("cat", "kitty"), ("dog",))
    torch.testing.assert_close(v.embeddings.norm(dim=-1), torch.ones(2))
    per = build_vocabulary(["a", "b", "c"], text_encoder=enc, per_template=True,
                           templates="imagenet")
    assert enc.calls[-1] == ("per_template", [["a"], ["b"], ["c"]], "imagenet")
    assert per.embeddings.shape == (3, 2, D) and per.background is None
    torch.testing.assert_close(per.embeddings.norm(dim=-1), torch.ones(3, 2))


def test_builders_carry_the_encoders_logit_scale_and_bias():
    enc = _Encoder()
    assert build_vocabulary(["cat"], text_encoder=enc).logit_bias is None  # plain encoder
    enc.logit_scale, enc.logit_bias = 117.3, -12.5  # a SigLIP TextClassifier's
    v = build_vocabulary(["cat", "dog"], text_encoder=enc)
    assert (v.logit_scale, v.logit_bias) == (117.3, -12.5)
    per = build_vocabulary(["cat"], text_encoder=enc, per_template=True)
    assert (per.logit_scale, per.logit_bias) == (117.3, -12.5)
    given = build_vocabulary(["cat"], text_encoder=enc, logit_scale=20.0, logit_bias=-1.0)
    assert (given.logit_scale, given.logit_bias) == (20.0, -1.0)
    stored = build_vocabulary(["cat"], embeddings=torch.ones(1, D), background=False,
                              text_encoder=enc)
    assert stored.logit_scale is None and stored.logit_bias is None
    stored = build_vocabulary(["cat"], embeddings=torch.ones(1, D), background=False,
                              logit_scale=30.0)
    assert stored.logit_scale == 30.0


def test_synonyms_and_class_lists():
    assert class_synonyms("car, auto,  automobile") == ["car", "auto", "automobile"]
    assert class_synonyms("wall-other-merged") == ["wall-other-merged"]
    assert class_synonyms("wall-other-merged", clean=True) == ["wall"]
    assert class_synonyms("dining table, Dining-Table", clean=True) == ["dining table"]
    assert class_synonyms("person, ,someone") == ["person", "someone"]
    with pytest.raises(ValueError, match="empty"):
        class_synonyms("  ")
    coco = ["person", "car", "wall-other-merged", "sky-other-merged"]
    ade = ["person, individual, someone", "car, auto, automobile", "wall", "skyscraper"]
    assert seen_by_synonyms(ade, coco) == [True, True, True, False]
    assert seen_by_synonyms(["Sky"], ["sky, heaven"]) == [True]
    assert parse_class_list(" red circle, dog ") == ("red circle", "dog")
    with pytest.raises(ValueError):
        parse_class_list("a,,b")
