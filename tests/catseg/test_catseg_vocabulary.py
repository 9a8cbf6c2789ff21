"""Per-template semantic-segmentation vocabularies."""
import pytest
import torch
import torch.nn.functional as F
from detectron2.data import MetadataCatalog

from clipself.catseg import (
    IMAGENET_TEMPLATES,
    SemSegVocabulary,
    embed_per_template,
    resolve_templates,
    semseg_vocabulary,
    split_synonyms,
)
from clipself.modeling import TextClassifier

TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
CFG = {"embed_dim": 16, "text_cfg": TEXT, "vision_cfg": {
    "image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16}}


def test_templates_and_synonyms():
    assert len(IMAGENET_TEMPLATES) == 80 == len(set(IMAGENET_TEMPLATES))
    assert resolve_templates("catseg") == ["A photo of a {} in the scene"]
    assert len(resolve_templates("vild")) == 63
    assert split_synonyms("person, individual ,someone") == ["person", "individual", "someone"]


def test_text_classifier_embeds_each_template_and_averages_synonyms():
    torch.manual_seed(0)
    clf = TextClassifier(CFG, templates="single")
    templates = ["a {}.", "a photo of the {}."]
    emb = embed_per_template(clf, [["cat", "kitty"], ["dog"]], templates)
    assert emb.shape == (2, 2, 16)
    tower, tok = clf._tower, clf._tokenizer

    def enc(text):
        with torch.no_grad():
            return F.normalize(tower(tok([text])).float()[0], dim=-1)

    want = F.normalize(enc("a photo of the cat.") + enc("a photo of the kitty."), dim=-1)
    torch.testing.assert_close(emb[0, 1], want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(emb[1, 0], enc("a dog."), atol=1e-5, rtol=1e-5)


def test_semseg_vocabulary_from_a_dataset_with_a_callable_encoder():
    name = "_catseg_test_vocab_dataset"
    MetadataCatalog.get(name).set(stuff_classes=["wall, brick wall", "sky"])
    calls = []

    def encoder(class_names, template):
        calls.append((class_names, template))
        return torch.randn(len(class_names), 8) * 5

    vocab = semseg_vocabulary(name, text_encoder=encoder, templates=["a {}", "b {}", "c {}"])
    assert vocab.class_names == ("wall, brick wall", "sky")
    assert vocab.embeddings.shape == (2, 3, 8) and vocab.num_templates == 3
    torch.testing.assert_close(vocab.embeddings.norm(dim=-1), torch.ones(2, 3))
    assert calls[0] == ([["wall", "brick wall"], ["sky"]], "a {}")


def test_semseg_vocabulary_from_stored_embeddings(tmp_path):
    emb = torch.randn(3, 4, 8)
    path = str(tmp_path / "emb.pt")
    torch.save(emb, path)
    vocab = semseg_vocabulary(class_names=["a", "b", "c"], embeddings=path)
    torch.testing.assert_close(vocab.embeddings, F.normalize(emb, dim=-1))
    single = semseg_vocabulary(class_names=["a", "b", "c"], embeddings=torch.randn(3, 8))
    assert single.embeddings.shape == (3, 1, 8)
    with pytest.raises(ValueError, match="needs"):
        SemSegVocabulary(("a", "b"), torch.randn(3, 1, 8))
    with pytest.raises(ValueError, match="text_encoder"):
        semseg_vocabulary(class_names=["a"])
