import torch
from torchvision.ops import clip_boxes_to_image

from clipself.data.regions import (
    dominant_class,
    grid_cells,
    grid_choices,
    region_class_areas,
    sample_grid_boxes,
    scale_boxes,
    select_proposals,
)


def test_exactly_the_24_grid_choices():
    choices = grid_choices(6)
    assert len(choices) == 24 == len(set(choices))
    by_rows = {m: sorted(n for mm, n in choices if mm == m) for m in range(1, 7)}
    assert by_rows == {
        1: [1, 2], 2: [1, 2, 3, 4], 3: [2, 3, 4, 5, 6], 4: [2, 3, 4, 5, 6],
        5: [3, 4, 5, 6], 6: [3, 4, 5, 6],
    }


def test_grid_cells_tile_the_image():
    cells = grid_cells(120, 60, rows=2, cols=3)
    assert cells.shape == (6, 4)
    assert torch.allclose(cells[0], torch.tensor([0.0, 0.0, 40.0, 30.0]))
    assert torch.allclose(cells[-1], torch.tensor([80.0, 30.0, 120.0, 60.0]))
    areas = (cells[:, 2] - cells[:, 0]) * (cells[:, 3] - cells[:, 1])
    assert torch.isclose(areas.sum(), torch.tensor(120.0 * 60))


def test_sampling_covers_all_choices_and_caps_boxes():
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(600):
        boxes = sample_grid_boxes(640, 480, max_boxes=20, generator=g)
        assert 1 <= len(boxes) <= 20
        # recover the grid from the cell size
        w = float(boxes[0, 2] - boxes[0, 0])
        h = float(boxes[0, 3] - boxes[0, 1])
        seen.add((round(480 / h), round(640 / w)))
    assert seen == set(grid_choices(6))
    # 6 x 6 = 36 cells are capped to 20 distinct cells
    g = torch.Generator().manual_seed(1)
    big = [sample_grid_boxes(64, 64, generator=g) for _ in range(300)]
    capped = [b for b in big if len(b) == 20]
    assert capped and all(len(torch.unique(b, dim=0)) == 20 for b in capped)


def test_sampling_is_reproducible():
    a = sample_grid_boxes(100, 80, generator=torch.Generator().manual_seed(3))
    b = sample_grid_boxes(100, 80, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_proposal_filter_and_dummy():
    boxes = torch.tensor(
        [[0, 0, 4, 4], [0, 0, 10, 10], [0, 0, 2000, 2000], [5, 5, 50, 30]], dtype=torch.float
    )
    kept = select_proposals(boxes, 2000, 2000, generator=torch.Generator().manual_seed(0))
    assert sorted(kept[:, 2].tolist()) == [10.0, 50.0]  # too small and too large dropped
    many = torch.tensor([[0, 0, 20, 20]] * 50, dtype=torch.float)
    assert len(select_proposals(many, 100, 100)) == 20
    dummy = select_proposals(torch.zeros(0, 4), 200, 100)
    assert torch.equal(dummy, torch.tensor([[0.0, 0.0, 50.0, 25.0]]))
    only_tiny = select_proposals(torch.tensor([[0.0, 0.0, 3.0, 3.0]]), 40, 40)
    assert torch.equal(only_tiny, torch.tensor([[0.0, 0.0, 10.0, 10.0]]))


def test_scale_and_clip():
    box = torch.tensor([[10.0, 10.0, 30.0, 50.0]])
    big = scale_boxes(box, 1.5)
    assert torch.allclose(big, torch.tensor([[5.0, 0.0, 35.0, 60.0]]))
    assert torch.allclose(
        clip_boxes_to_image(big, (55, 32)), torch.tensor([[5.0, 0.0, 32.0, 55.0]]))


def _segment_map():
    """8 x 8 map: class 3 (stuff) everywhere, a 4 x 4 object of class 0 at rows 0-3, cols 0-3,
    a 2 x 2 object of class 1 at rows 6-7, cols 6-7, one unlabeled pixel (255) at (7, 0)."""
    m = torch.full((8, 8), 3, dtype=torch.long)
    m[0:4, 0:4] = 0
    m[6:8, 6:8] = 1
    m[7, 0] = 255
    return m


def test_region_class_areas_count_pixels_per_class():
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [2.0, 2.0, 6.0, 6.0], [-3.0, 5.5, 2.2, 9.0]])
    areas = region_class_areas(_segment_map(), boxes, num_classes=4)
    assert areas.tolist() == [
        [16, 4, 0, 43],  # the whole map: 64 pixels, one unlabeled
        [4, 0, 0, 12],  # rows/cols 2-5: a quarter of the object
        [0, 0, 0, 8],  # clipped to cols 0-2, rows 5-7 (rounded outwards): 9 pixels, 1 unlabeled
    ]


def test_grid_cells_are_labelled_by_their_dominant_class():
    labels, fraction = dominant_class(_segment_map(), grid_cells(8, 8, rows=2, cols=2), 4)
    assert labels.tolist() == [0, 3, 3, 3]  # the object fills the top-left cell
    assert torch.allclose(fraction, torch.tensor([1.0, 1.0, 15 / 16, 12 / 16]))
    # a cell that is half object, half stuff: 8 pixels each, the tie goes to the lower id
    labels, fraction = dominant_class(_segment_map(), torch.tensor([[2.0, 0.0, 6.0, 4.0]]), 4)
    assert labels.tolist() == [0] and fraction.tolist() == [0.5]
    # the small object is a minority of the bottom-right 4 x 4 cell
    labels, fraction = dominant_class(_segment_map(), torch.tensor([[4.0, 4.0, 8.0, 8.0]]), 4)
    assert labels.tolist() == [3] and fraction.tolist() == [0.75]
