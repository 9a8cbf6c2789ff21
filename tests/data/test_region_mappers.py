import json

import numpy as np
import torch
from panopticapi.utils import id2rgb
from PIL import Image

from clipself.data.clip_transforms import crop_letterboxed, letterbox, resize_longest_pad
from clipself.data.mappers import CLIPSelfMapper, RegionEvalMapper
from clipself.data.mappers.region_eval import mask_to_box, resize_masks_longest


def _image(w, h, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_resize_longest_pad_and_letterbox():
    img = _image(200, 100)
    student, scale = resize_longest_pad(img, 64)
    assert student.shape == (3, 64, 64) and scale == 64 / 200
    assert student[:, 32:, :].eq(0).all()  # padded below
    crop = letterbox(_image(30, 60), 32)
    assert crop.shape == (3, 32, 32)
    assert crop[:, :, :8].eq(0).all() and crop[:, :, 24:].eq(0).all()  # centred horizontally
    # zero-size and out-of-image boxes still give one crop each
    crops = crop_letterboxed(img, torch.tensor([[5.0, 5, 5, 5], [-50, -50, 500, 500]]), 16)
    assert crops.shape == (2, 3, 16, 16)
    assert crop_letterboxed(img, torch.zeros(0, 4), 16).shape == (0, 3, 16, 16)


def test_mask_to_box_inclusive_and_resize():
    masks = torch.zeros(2, 10, 20, dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    boxes = mask_to_box(masks)
    assert boxes[0].tolist() == [3.0, 2.0, 8.0, 4.0]  # inclusive max index
    assert boxes[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # empty mask
    small = resize_masks_longest(masks, 8)
    assert small.shape == (2, 8, 8)
    assert small[0, :4].any() and not small[0, 4:].any()  # padded bottom, aligned top-left
    assert not small[1].any()


def test_distill_mapper_grid_and_proposals(tmp_path):
    path = str(tmp_path / "im.png")
    _image(96, 64).save(path)
    torch.manual_seed(0)
    grid = CLIPSelfMapper(image_size=48, crop_size=16, region_source="grid")
    out = grid({"file_name": path, "image_id": 1})
    assert out["image"].shape == (3, 48, 48)
    assert 1 <= len(out["boxes"]) <= 20 and out["crops"].shape[1:] == (3, 16, 16)
    assert len(out["crops"]) == len(out["boxes"])
    assert out["boxes"][:, 2].max() <= 48 + 1e-4 and out["boxes"][:, 3].max() <= 32 + 1e-4
    prop = CLIPSelfMapper(image_size=48, crop_size=16, region_source="proposals")
    rec = {"file_name": path, "image_id": 1, "annotations": [
        {"bbox": [10, 10, 20, 20], "bbox_mode": 1}, {"bbox": [0, 0, 2, 2], "bbox_mode": 1}]}
    out = prop(rec)
    assert torch.allclose(out["boxes"], torch.tensor([[5.0, 5.0, 15.0, 15.0]]))  # x 0.5
    empty = prop({"file_name": path, "image_id": 1, "annotations": []})
    assert torch.allclose(empty["boxes"], torch.tensor([[0.0, 0.0, 12.0, 8.0]]))  # dummy box


def test_region_eval_mapper(tmp_path):
    w, h = 80, 40
    _image(w, h).save(tmp_path / "im.png")
    pan = np.zeros((h, w), dtype=np.int64) + 7  # stuff segment 7 everywhere
    pan[10:30, 20:40] = 9  # a thing
    pan[0:2, 0:2] = 11  # a tiny thing (area 4 < 64): dropped
    Image.fromarray(id2rgb(pan)).save(tmp_path / "pan.png")
    rec = {
        "file_name": str(tmp_path / "im.png"), "pan_seg_file_name": str(tmp_path / "pan.png"),
        "image_id": 3,
        "segments_info": [
            {"id": 9, "category_id": 4, "isthing": True, "bbox": [20, 10, 20, 20]},
            {"id": 7, "category_id": 2, "isthing": False, "bbox": [0, 0, 80, 40]},
            {"id": 11, "category_id": 1, "isthing": True, "bbox": [0, 0, 2, 2]},
        ],
    }
    out = RegionEvalMapper(image_size=40, crop_size=16, mask_size=8)(rec)
    assert out["labels"].tolist() == [4, 2] and out["isthing"].tolist() == [True, False]
    assert torch.allclose(out["boxes"][0], torch.tensor([10.0, 5.0, 20.0, 15.0]))  # x 0.5
    assert torch.allclose(out["boxes"][1], torch.tensor([0.0, 0.0, 39.5, 19.5]))  # inclusive
    assert out["masks"].shape == (2, 8, 8) and out["crops"].shape == (2, 3, 16, 16)
    # 80x40 -> 8x4 grid: the thing (rows 10-30, cols 20-40) covers rows 1-3, cols 2-4
    assert out["masks"][0, 1:3, 2:4].all() and not out["masks"][:, 4:].any()
    json.dumps(out["labels"].tolist())


def test_distill_mapper_mixed_regions(tmp_path):
    path = str(tmp_path / "im.png")
    _image(96, 64).save(path)
    torch.manual_seed(0)
    mixed = CLIPSelfMapper(image_size=96, crop_size=16, region_source="mixed", max_boxes=6)
    anns = [{"bbox": [10 + i, 10, 20, 20], "bbox_mode": 1} for i in range(5)]
    out = mixed({"file_name": path, "image_id": 1, "annotations": anns})
    # 3 proposals (max_boxes // 2) + 3 grid cells; proposals come first
    assert len(out["boxes"]) <= 6 and len(out["crops"]) == len(out["boxes"])
    props = out["boxes"][:3]
    assert ((props[:, 2] - props[:, 0]) == 20).all()
    # proposals are cropped x1.5, grid cells as they are
    regions, scales = mixed._regions({"annotations": anns}, 96, 64)
    assert scales.tolist()[:3] == [1.5] * 3 and set(scales.tolist()[3:]) <= {1.0}
    # without annotations: grid cells only (no dummy proposal box)
    regions, scales = mixed._regions({"annotations": []}, 96, 64)
    assert 1 <= len(regions) <= 6 and (scales == 1).all()


def _region_eval_record(tmp_path):
    w, h = 80, 40
    _image(w, h).save(tmp_path / "im.png")
    pan = np.zeros((h, w), dtype=np.int64) + 7  # stuff segment 7 everywhere
    pan[10:30, 20:40] = 9  # a thing
    pan[0:2, 0:2] = 11  # a tiny thing (area 4 < 64): dropped as a region, present in the image
    Image.fromarray(id2rgb(pan)).save(tmp_path / "pan.png")
    return {
        "file_name": str(tmp_path / "im.png"), "pan_seg_file_name": str(tmp_path / "pan.png"),
        "image_id": 3,
        "segments_info": [
            {"id": 9, "category_id": 4, "isthing": True, "bbox": [20, 10, 20, 20]},
            {"id": 7, "category_id": 2, "isthing": False, "bbox": [0, 0, 80, 40]},
            {"id": 11, "category_id": 1, "isthing": True, "bbox": [0, 0, 2, 2]},
        ],
    }


def test_mappers_whole_image_for_the_image_level_term_and_metric(tmp_path):
    rec = _region_eval_record(tmp_path)
    img = Image.open(rec["file_name"])
    off = RegionEvalMapper(image_size=40, crop_size=16, mask_size=8)(rec)
    assert "whole_image" not in off and "image_labels" not in off
    on = RegionEvalMapper(image_size=40, crop_size=16, mask_size=8, max_regions=1,
                          whole_image_size=16)(rec)
    assert torch.equal(on["whole_image"], letterbox(img, 16))  # (3, 16, 16), centred
    assert on["whole_image"][:, :4].eq(0).all() and on["whole_image"][:, 12:].eq(0).all()
    # thing classes of all segments, sorted and unique, whatever max_regions and the size filter
    assert on["image_labels"].tolist() == [1, 4] and on["labels"].tolist() == [4]
    for k in ("image", "boxes", "masks", "crops", "labels", "isthing"):
        assert torch.equal(on[k], RegionEvalMapper(
            image_size=40, crop_size=16, mask_size=8, max_regions=1)(rec)[k]), k

    torch.manual_seed(0)
    plain = CLIPSelfMapper(image_size=48, crop_size=16)({"file_name": rec["file_name"]})
    torch.manual_seed(0)
    train = CLIPSelfMapper(image_size=48, crop_size=16, whole_image_size=16)(
        {"file_name": rec["file_name"]})
    assert "whole_image" not in plain
    assert torch.equal(train["whole_image"], letterbox(img, 16))
    assert all(torch.equal(plain[k], train[k]) for k in ("image", "boxes", "crops"))
