import pytest
import torch

from clipself.synthetic import SHAPES
from clipself.synthetic.analysis import attribute_accuracy, class_attributes

NAMES = ["red circle", "red star", "blue circle", "blue star", "wall"]


def test_class_attributes_marks_stuff():
    a = class_attributes(NAMES)
    assert a["colour"].tolist()[-1] == -1 and a["shape"].tolist()[-1] == -1
    assert a["shape"][0] == a["shape"][2] == SHAPES.index("circle")
    assert a["colour"][0] == a["colour"][1] != a["colour"][2]


def test_attribute_accuracy_by_hand():
    labels = torch.tensor([0, 0, 1, 3])  # red circle x2, red star, blue star
    pred = torch.tensor([0, 2, 0, 4])  # right; colour wrong; shape wrong; stuff
    r = attribute_accuracy(pred, labels, NAMES)
    assert r["top1"] == pytest.approx(25.0)
    assert r["colour"] == pytest.approx(50.0)  # regions 0 and 2
    assert r["shape"] == pytest.approx(50.0)  # regions 0 and 1
    c = r["shape_confusion"]
    n = len(SHAPES)
    assert c.shape == (n, n + 1) and int(c.sum()) == 4
    circle, star = SHAPES.index("circle"), SHAPES.index("star")
    assert c[circle, circle] == 2 and c[star, circle] == 1 and c[star, n] == 1


def test_attribute_accuracy_rejects_stuff_labels():
    with pytest.raises(ValueError, match="thing classes"):
        attribute_accuracy(torch.tensor([0]), torch.tensor([4]), NAMES)
