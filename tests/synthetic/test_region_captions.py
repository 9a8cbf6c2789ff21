"""The caption rules of region crops (docs/miniature.md §2): a region is captioned as the world
captions a scene; regions without an object by their classes, by area."""
import pytest

from clipself.synthetic import (
    ALL_CLASSES,
    REGION_CAPTION_COVER,
    REGION_CAPTION_MAX_NAMES,
    REGION_CAPTION_MIN_SHARE,
    STUFF_CLASSES,
    make_caption,
    region_caption,
    region_caption_classes,
    region_scene_caption,
)

GRASS, SAND, SKY = (ALL_CLASSES.index(s) for s in ("grass", "sand", "sky"))


def _areas(**pixels) -> list:
    """(K,) class areas from ``name=pixels`` (spaces as underscores)."""
    a = [0] * len(ALL_CLASSES)
    for name, n in pixels.items():
        a[ALL_CLASSES.index(name.replace("_", " "))] = n
    return a


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


def test_scene_caption_names_what_a_scene_would_show():
    names = ["red square", "blue star", "blue star", "green cross"]
    visible = [100, 80, 80, 200]
    # the square and both stars whole, 30% of the cross (the world's own threshold): all named,
    # the stars counted, largest first; the stuff after them, largest first
    inside = [100, 80, 80, 60]
    areas = _areas(red_square=100, blue_star=160, green_cross=60, grass=500, sky=180)
    assert region_scene_caption(names, inside, visible, areas) == make_caption(
        ["red square", "blue star", "blue star", "green cross"], ["grass", "sky"])
    assert region_scene_caption(names, inside, visible, areas) == (
        "a photo of a red square, two blue stars and a green cross against grass and the sky.")


def test_scene_caption_leaves_out_cut_and_tiny_objects_and_thin_stuff():
    names = ["red square", "blue star"]
    # the square is 29% inside (cut), the star whole but 39 pixels (below the world's 40)
    areas = _areas(red_square=29, blue_star=39, sand=900, sky=30)  # sky 3%: not named
    assert region_scene_caption(names, [29, 39], [100, 39], areas) == "a photo of sand."
    assert region_scene_caption(names, [40, 45], [100, 45], areas) == (
        "a photo of a blue star and a red square on sand.")  # 40% and 40 pixels: named


def test_scene_caption_of_a_region_inside_an_object_is_its_crop_caption():
    # a tight crop of a square filling it: no stuff; a crop inside a cut object: the area rule
    assert region_scene_caption(["red square"], [400], [400], _areas(red_square=400)) == (
        "a photo of a red square.")
    assert region_scene_caption(["red square"], [100], [400], _areas(red_square=100)) == (
        "a photo of a red square.")
    assert region_scene_caption([], [], [], _areas(grass=10, sky=90)) == (
        "a photo of the sky and grass.")
    assert all(ALL_CLASSES[i] in STUFF_CLASSES for i in (GRASS, SAND, SKY))
