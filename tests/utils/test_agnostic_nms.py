"""clipself.utils.visualize.agnostic_nms: one drawn box per object, whatever its class."""
import pytest
import torch

from clipself.utils.visualize import agnostic_nms, intersection_over_smaller


def test_overlapping_boxes_of_different_classes_keep_the_higher_score():
    # boxes 0 and 1: the same object claimed by two classes (IoU 0.81); box 2 elsewhere
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.4, 0.9, 0.3])
    assert agnostic_nms(boxes, scores, 0.5).tolist() == [1, 2]
    # above the IoU threshold (and without the containment rule) both survive; top_k keeps
    # the best
    assert agnostic_nms(boxes, scores, 0.9, containment=None).tolist() == [1, 0, 2]
    assert agnostic_nms(boxes, scores, 0.9, top_k=2, containment=None).tolist() == [1, 0]
    assert agnostic_nms(boxes, scores, 0.9).tolist() == [1, 2]  # box 1 lies inside box 0


def test_a_box_nested_in_a_better_one_is_not_drawn():
    # box 1 (a part of the object, score 0.5) lies inside box 0 (score 0.8): IoU 0.25 only
    boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 10.0, 10.0], [15.0, 15.0, 35.0, 35.0]])
    scores = torch.tensor([0.8, 0.5, 0.7])
    assert agnostic_nms(boxes, scores, 0.3, containment=None).tolist() == [0, 2, 1]
    # box 2 overlaps box 0 by 25 of its 400 pixels: kept; box 1 is nested: dropped
    assert agnostic_nms(boxes, scores, 0.3, containment=0.6).tolist() == [0, 2]
    assert agnostic_nms(boxes, scores).tolist() == [0, 2]  # the drawing defaults


def test_intersection_over_smaller_by_hand():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 5.0, 15.0, 15.0], [2.0, 2.0, 4.0, 4.0], [20.0, 0.0, 30.0, 10.0]])
    got = intersection_over_smaller(a, b)
    assert got.shape == (1, 3)
    assert torch.allclose(got, torch.tensor([[25 / 100, 1.0, 0.0]]))
    assert torch.allclose(intersection_over_smaller(b, a), got.T)


def test_empty_and_mismatched_inputs():
    assert agnostic_nms(torch.zeros(0, 4), torch.zeros(0)).tolist() == []
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        agnostic_nms(torch.zeros(2, 4), torch.zeros(1))
