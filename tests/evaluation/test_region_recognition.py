import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.data import MetadataCatalog

from clipself.evaluation import RegionRecognitionEvaluator, mean_class_accuracy
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
