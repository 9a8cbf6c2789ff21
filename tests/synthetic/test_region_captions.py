"""The caption rule of region crops (docs/miniature.md §2): classes by area, most of the crop."""
import pytest

from clipself.synthetic import (
    ALL_CLASSES,
    REGION_CAPTION_COVER,
    REGION_CAPTION_MAX_NAMES,
    REGION_CAPTION_MIN_SHARE,
    region_caption,
    region_caption_classes,
)


def test_defaults():
    assert (REGION_CAPTION_COVER, REGION_CAPTION_MIN_SHARE, REGION_CAPTION_MAX_NAMES) == (
        0.8, 0.05, 3)


def test_classes_by_area_until_most_of_the_crop_is_named():
    assert region_caption_classes([0, 10, 70, 15, 5]) == [2, 3]  # 70% < 80%, then 85%: stop
    assert region_caption_classes([0, 0, 90, 10]) == [2]  # 90% covers most already
    assert region_caption_classes([40, 30, 20, 10]) == [0, 1, 2]  # 70%, then 90%
    assert region_caption_classes([25, 25, 25, 25]) == [0, 1, 2]  # at most 3; ties: lower first


def test_small_classes_are_not_named_but_the_largest_always_is():
    assert region_caption_classes([76, 4, 4, 4, 4, 4, 4]) == [0]  # the rest are below 5% each
    assert region_caption_classes([4] * 25) == [0]  # 25 classes of 4%: only the (first) largest
    assert region_caption_classes([0, 0, 0]) == []


def test_caption_text():
    assert region_caption(["grass", "red square"]) == "a photo of grass and a red square."
    assert region_caption(["blue star"]) == "a photo of a blue star."
    assert region_caption(["brick wall", "yellow cross", "sky"]) == (
        "a photo of a brick wall, a yellow cross and the sky.")
    assert all(region_caption([c]).startswith("a photo of ") for c in ALL_CLASSES)
    with pytest.raises(ValueError, match="at least one class"):
        region_caption([])
