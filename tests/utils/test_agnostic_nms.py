"""clipself.utils.visualize.agnostic_nms: one drawn box per object, whatever its class."""
import pytest
import torch

from clipself.utils.visualize import agnostic_nms


def test_overlapping_boxes_of_different_classes_keep_the_higher_score():
    # boxes 0 and 1: the same object claimed by two classes (IoU 0.81); box 2 elsewhere
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.4, 0.9, 0.3])
    assert agnostic_nms(boxes, scores, 0.5).tolist() == [1, 2]
    # above the IoU threshold both survive; top_k keeps the best
    assert agnostic_nms(boxes, scores, 0.9).tolist() == [1, 0, 2]
    assert agnostic_nms(boxes, scores, 0.9, top_k=2).tolist() == [1, 0]


def test_empty_and_mismatched_inputs():
    assert agnostic_nms(torch.zeros(0, 4), torch.zeros(0)).tolist() == []
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        agnostic_nms(torch.zeros(2, 4), torch.zeros(1))
