import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.data import MetadataCatalog

from clipself.evaluation import (
    RegionRecognitionEvaluator,
    average_precision,
    mean_average_precision,
    mean_class_accuracy,
)
from clipself.structures import Vocabulary


def test_mean_class_accuracy_by_hand():
    # class 0: 3 regions, 2 right at top-1; class 1: 1 region, wrong at top-1, right at top-2
    labels = torch.tensor([0, 0, 0, 1])
    topk = torch.tensor([[0, 1], [0, 1], [1, 0], [0, 1]])
    assert mean_class_accuracy(topk, labels, 1, 3) == pytest.approx(100 * (2 / 3 + 0) / 2)
    assert mean_class_accuracy(topk, labels, 2, 3) == pytest.approx(100.0)
    assert math.isnan(mean_class_accuracy(topk[:0], labels[:0], 1, 3))


def _register(name, classes):
    meta = MetadataCatalog.get(name)
    if not hasattr(meta, "stuff_classes"):
        meta.set(stuff_classes=classes)


def test_evaluator_on_hand_made_features():
    name = "_test_region_eval_4cls"
    _register(name, ["a", "b", "c", "d"])
    vocab = Vocabulary(("a", "b", "c", "d"), torch.eye(4))  # class k <-> basis vector k
    ev = RegionRecognitionEvaluator(name, vocab, distributed=False)
    assert ev.vocabulary is vocab and ev.class_names == ["a", "b", "c", "d"]
    ev.reset()
    # image 1: two things (classes 0, 1), one stuff (class 3)
    labels = torch.tensor([0, 1, 3])
    isthing = torch.tensor([True, True, False])
    perfect = F.normalize(torch.eye(4)[labels] + 0.01, dim=-1)
    wrong = torch.eye(4)[torch.tensor([2, 2, 2])]  # always class 2
    out = {"boxes": perfect, "masks": wrong, "crops": perfect}
    ev.process([{"labels": labels, "isthing": isthing}], [out])
    # image 2: one thing of class 0 whose box feature points to class 1
    ev.process(
        [{"labels": torch.tensor([0]), "isthing": torch.tensor([True])}],
        [{"boxes": torch.eye(4)[[1]], "masks": torch.eye(4)[[0]], "crops": torch.eye(4)[[0]]}],
    )
    # image 3: every region filtered out by the mapper: skipped, counted in the log
    empty = torch.zeros(0, 4)
    ev.process([{"labels": torch.zeros(0, dtype=torch.long), "isthing": torch.zeros(0).bool()}],
               [{"boxes": empty, "masks": empty, "crops": empty}])
    res = ev.evaluate()["region_recognition"]
    assert ev._images_without_regions == 1
    # boxes/thing: class 0 -> 1 of 2 right, class 1 -> right  => (50 + 100) / 2
    assert res["boxes_top1"] == pytest.approx(75.0)
    assert res["boxes_top5"] == pytest.approx(100.0)  # 4 classes: all within top 5
    # masks/thing: class 0 -> 1 of 2 (image 2 right), class 1 -> wrong => 25
    assert res["thing_masks_top1"] == pytest.approx(25.0)
    assert res["stuff_masks_top1"] == pytest.approx(0.0)
    assert res["crops_top1"] == pytest.approx(100.0)
    assert res["stuff_crops_top1"] == pytest.approx(100.0)
    assert res["num_thing_regions"] == 3 and res["num_stuff_regions"] == 1


def test_evaluator_rejects_another_vocabulary():
    name = "_test_region_eval_3cls"
    _register(name, ["a", "b", "c"])
    with pytest.raises(ValueError, match="has 3 classes but the vocabulary lists 4"):
        RegionRecognitionEvaluator(name, Vocabulary(tuple("abcd"), torch.eye(4)),
                                   distributed=False)
    ev = RegionRecognitionEvaluator(name, Vocabulary(tuple("abc"), torch.eye(3)),
                                    distributed=False)
    with pytest.raises(ValueError, match="in another order"):
        ev.set_vocabulary(Vocabulary(tuple("cba"), torch.eye(3)))


def test_classes_without_regions_are_left_out_of_the_mean():
    # 4 classes, regions only of classes 0 and 2: the mean is over those two
    labels = torch.tensor([0, 0, 2])
    topk = torch.tensor([[0], [1], [2]])
    assert mean_class_accuracy(topk, labels, 1, 4) == pytest.approx((50 + 100) / 2)
    assert math.isnan(mean_class_accuracy(topk[:0], labels[:0], 1, 4))


def test_average_precision_by_hand():
    # ranks 1..4: pos, neg, pos, neg -> precision at the positives 1 and 2/3
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == \
        pytest.approx((1 + 2 / 3) / 2)
    # the order of the input does not matter, only the scores
    assert average_precision(np.array([0.7, 0.6, 0.9, 0.8]), np.array([1, 0, 1, 0])) == \
        pytest.approx((1 + 2 / 3) / 2)
    # a tie of one positive and one negative at the top is one threshold: precision 1/2
    assert average_precision(np.array([0.5, 0.5, 0.1]), np.array([0, 1, 0])) == \
        pytest.approx(0.5)
    # last place: precision 1/3
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([0, 0, 1])) == \
        pytest.approx(1 / 3)
    assert math.isnan(average_precision(np.array([0.3, 0.2]), np.array([0, 0])))


def test_mean_average_precision_skips_classes_without_positives():
    scores = np.array([[0.9, 0.1, 0.5], [0.8, 0.2, 0.5], [0.1, 0.3, 0.5]])
    targets = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0]], dtype=bool)
    # class 0: ranks 1 (pos), 2 (neg), 3 (pos) -> (1 + 2/3) / 2; class 1: top -> 1; class 2 none
    assert mean_average_precision(scores, targets) == pytest.approx(100 * ((1 + 2 / 3) / 2 + 1) / 2)
    assert math.isnan(mean_average_precision(scores, np.zeros((3, 3), dtype=bool)))


def test_evaluator_image_map_on_hand_made_embeddings():
    name = "_test_region_eval_4cls_image"
    _register(name, ["a", "b", "c", "d"])
    ev = RegionRecognitionEvaluator(name, Vocabulary(tuple("abcd"), torch.eye(4)),
                                    distributed=False)
    e = torch.eye(4)
    one = {"labels": torch.tensor([0]), "isthing": torch.tensor([True])}
    feats = {"boxes": e[[0]], "masks": e[[0]], "crops": e[[0]]}
    # image 1 holds things a, b; image 2 holds a; image 3 holds b and has no region left
    empty = {"labels": torch.zeros(0, dtype=torch.long), "isthing": torch.zeros(0).bool()}
    no_feats = {"boxes": e[:0], "masks": e[:0], "crops": e[:0]}
    images = [
        ({**one, "image_labels": torch.tensor([0, 1])},
         {**feats, "image": F.normalize(e[0] + e[1], dim=0)}),
        ({**one, "image_labels": torch.tensor([0])},
         {**feats, "image": F.normalize(e[0] + 0.3 * e[1], dim=0)}),
        ({**empty, "image_labels": torch.tensor([1])},
         {**no_feats, "image": F.normalize(e[2] + 0.1 * e[1], dim=0)}),
    ]
    for inp, out in images:
        ev.process([inp], [out])
    res = ev.evaluate()["region_recognition"]
    # a: images 2 (0.96) and 1 (0.71) on top -> AP 1; b: image 1 (0.71, +), image 2 (0.29, -),
    # image 3 (0.10, +) -> (1 + 2/3) / 2; c, d are in no image -> left out
    assert res["image_mAP"] == pytest.approx(100 * (1 + (1 + 2 / 3) / 2) / 2)
    assert res["num_images"] == 3
    assert res["boxes_top1"] == pytest.approx(100.0) and res["num_thing_regions"] == 2


def test_evaluator_without_image_embeddings_reports_no_image_map():
    name = "_test_region_eval_2cls_noimage"
    _register(name, ["a", "b"])
    ev = RegionRecognitionEvaluator(name, Vocabulary(tuple("ab"), torch.eye(2)), distributed=False)
    e = torch.eye(2)
    ev.process([{"labels": torch.tensor([1]), "isthing": torch.tensor([True])}],
               [{"boxes": e[[1]], "masks": e[[1]], "crops": e[[0]]}])
    res = ev.evaluate()["region_recognition"]
    assert "image_mAP" not in res and "num_images" not in res
    assert res["crops_top1"] == 0.0 and res["boxes_top1"] == 100.0
