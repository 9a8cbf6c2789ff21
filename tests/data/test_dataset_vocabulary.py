"""Vocabularies of registered datasets: classes, seen classes and thing ids from metadata."""
import pytest
import torch
import torch.nn.functional as F
from detectron2.data import MetadataCatalog

from clipself.data import dataset_vocabulary

from tests.helpers import unique

D = 8


def test_detection_vocabulary_from_dataset_metadata():
    vocab = dataset_vocabulary("ov_coco_val", embeddings=torch.randn(66, D))
    assert vocab.num_classes == 65 and int(vocab.seen_mask.sum()) == 48
    assert "cat" in vocab.unseen_classes and "person" not in vocab.unseen_classes
    assert vocab.thing_ids == tuple(range(65)) and vocab.background is not None
    custom = dataset_vocabulary(class_names=["cat", "dog"], embeddings=torch.randn(3, D))
    assert custom.class_names == ("cat", "dog") and custom.seen_mask.all()
    with pytest.raises(ValueError, match="has no"):
        dataset_vocabulary(unique("missing"), embeddings=torch.randn(3, D))
    with pytest.raises(ValueError, match="dataset_name or class_names"):
        dataset_vocabulary(embeddings=torch.randn(3, D))


def test_panoptic_vocabulary_seen_from_training_dataset():
    train, test = unique("pv_train"), unique("pv_test")
    MetadataCatalog.get(train).set(stuff_classes=["dog", "grass-merged"])
    MetadataCatalog.get(test).set(stuff_classes=["dog, puppy", "cat", "grass"],
                                  thing_dataset_id_to_contiguous_id={7: 0, 9: 1})
    emb = F.normalize(torch.randn(4, D), dim=-1)
    vocab = dataset_vocabulary(test, classes="stuff_classes", clean_names=True,
                               seen_dataset=train, embeddings=emb)
    assert list(vocab.class_names) == ["dog, puppy", "cat", "grass"]
    assert vocab.seen_mask.tolist() == [True, False, True]  # "grass-merged" is "grass"
    assert vocab.thing_ids == (0, 1) and vocab.synonyms[0] == ("dog", "puppy")
    calls = []

    def encoder(names, background):
        calls.append(names)
        return emb[: len(names) + 1]

    dataset_vocabulary(train, classes="stuff_classes", clean_names=True, text_encoder=encoder)
    assert calls == [[["dog"], ["grass"]]]  # cleaned synonyms are embedded
    assert dataset_vocabulary(train, classes="stuff_classes",
                              embeddings=emb[:3]).thing_ids == ()  # no thing metadata
    with pytest.raises(ValueError, match="not both"):
        dataset_vocabulary(test, classes="stuff_classes", seen_dataset=train,
                           seen_classes=["cat"], embeddings=emb)


def test_semantic_vocabulary_per_template_and_own_seen_classes():
    name = unique("sv")
    MetadataCatalog.get(name).set(stuff_classes=["wall, brick wall", "sky", "cat"],
                                  seen_classes=["wall, brick wall", "sky"])

    class Encoder:
        def embed_per_template(self, entries, templates):
            self.args = (entries, templates)
            return torch.randn(len(entries), 3, D) * 5

    enc = Encoder()
    vocab = dataset_vocabulary(name, classes="stuff_classes", text_encoder=enc,
                               per_template=True, templates=["a {}", "b {}", "c {}"])
    assert enc.args == ([["wall", "brick wall"], ["sky"], ["cat"]], ["a {}", "b {}", "c {}"])
    assert vocab.embeddings.shape == (3, 3, D) and vocab.num_templates == 3
    torch.testing.assert_close(vocab.embeddings.norm(dim=-1), torch.ones(3, 3))
    assert vocab.unseen_classes == ("cat",)  # the dataset's own seen_classes
