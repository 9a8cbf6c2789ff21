"""PanopticMapper on a tiny synthetic world: ground truth from the panoptic PNG + segments_info."""
import copy
import itertools
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.structures import BitMasks, Instances
from panopticapi.utils import id2rgb, rgb2id
from PIL import Image

from clipself.data.datasets.synthetic import prepare_world, register_synthetic
from clipself.data.mappers import PanopticMapper
from clipself.data.mappers.panoptic import rgb_to_id

_PREFIXES = itertools.count()


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("datasets"))
    prepare_world(root, 3, 1, 0, workers=1)
    prefix = f"synth_panmap{next(_PREFIXES)}_{os.getpid()}"
    register_synthetic(root, prefix=prefix)
    return DatasetCatalog.get(f"{prefix}_panoptic_train")


def _pan_ids(record):
    return rgb2id(np.asarray(Image.open(record["pan_seg_file_name"]).convert("RGB")))


def _check_masks_match_ids(inst, pan_ids, segments):
    """Each gt mask is exactly its segment's pixels; classes follow segments_info order."""
    kept = [s for s in segments if not s.get("iscrowd", 0) and (pan_ids == s["id"]).any()]
    assert inst.gt_classes.tolist() == [s["category_id"] for s in kept]
    assert len(inst.gt_masks) == len(kept)
    for mask, s in zip(inst.gt_masks.tensor, kept):
        assert torch.equal(mask, torch.from_numpy(pan_ids == s["id"]))


def test_rgb_to_id_matches_panopticapi():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(rgb_to_id(rgb), rgb2id(rgb))


def test_identity_train(records):
    mapper = PanopticMapper(is_train=True, augmentations=[])
    for rec in records:
        out = mapper(rec)
        h, w = rec["height"], rec["width"]
        assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, h, w)
        assert (out["height"], out["width"]) == (h, w)
        assert out["image_id"] == rec["image_id"] and out["file_name"] == rec["file_name"]
        assert out["sem_seg"].dtype == torch.int64 and out["sem_seg"].shape == (h, w)
        sem = np.asarray(Image.open(rec["sem_seg_file_name"]))
        assert np.array_equal(out["sem_seg"].numpy(), sem)
        inst = out["instances"]
        assert isinstance(inst, Instances) and inst.image_size == (h, w)
        assert isinstance(inst.gt_masks, BitMasks) and inst.gt_masks.tensor.dtype == torch.bool
        assert inst.gt_classes.dtype == torch.int64
        assert len(inst) == len(rec["segments_info"])  # none crowd, none empty
        _check_masks_match_ids(inst, _pan_ids(rec), rec["segments_info"])


def test_crowd_skipped_and_sem_seg_derived(records):
    rec = copy.deepcopy(records[1])
    rec["segments_info"][1]["iscrowd"] = 1
    crowd = rec["segments_info"][1]
    file_sem = np.asarray(Image.open(rec["sem_seg_file_name"]))
    del rec["sem_seg_file_name"]  # derived from the PNG instead: crowd pixels keep their class
    out = PanopticMapper(is_train=True, augmentations=[])(rec)
    assert np.array_equal(out["sem_seg"].numpy(), file_sem)
    assert (out["sem_seg"] == 255).any()  # this image has void pixels
    inst = out["instances"]
    assert len(inst) == len(rec["segments_info"]) - 1
    pan = _pan_ids(rec)
    assert not (inst.gt_masks.tensor & torch.from_numpy(pan == crowd["id"])).any()
    _check_masks_match_ids(inst, pan, rec["segments_info"])


def test_lsj_aligned_with_image(tmp_path):
    # The image *is* the panoptic PNG and the resize is nearest, so after any LSJ draw the image
    # decodes to the transformed id map: each mask must equal its segment's pixels there.
    augs = PanopticMapper.lsj_augmentations(image_size=64, min_scale=0.1, max_scale=2.0)
    assert [type(a) for a in augs] == [T.RandomFlip, T.ResizeScale, T.FixedSizeCrop]
    assert augs[2].pad is False
    augs[1].interp = Image.NEAREST
    mapper = PanopticMapper(is_train=True, augmentations=augs)
    pan = np.zeros((60, 90), dtype=np.int64) + 5
    pan[10:30, 5:40] = 300  # left thing
    pan[40:55, 70:88] = 70000  # right thing
    pan[0:4, 0:4] = 0  # void corner
    tmp = str(tmp_path / "pan.png")
    Image.fromarray(id2rgb(pan)).save(tmp)
    rec = {"file_name": tmp, "pan_seg_file_name": tmp, "image_id": 0, "height": 60, "width": 90,
           "segments_info": [{"id": 5, "category_id": 2, "iscrowd": 0},
                             {"id": 300, "category_id": 7, "iscrowd": 0},
                             {"id": 70000, "category_id": 9, "iscrowd": 0}]}
    torch.manual_seed(0)
    np.random.seed(0)
    for _ in range(12):
        out = mapper(rec)
        _, h, w = out["image"].shape
        assert h <= 64 and w <= 64
        assert out["sem_seg"].shape == (h, w) and out["instances"].image_size == (h, w)
        ids = rgb_to_id(out["image"].permute(1, 2, 0).numpy())
        _check_masks_match_ids(out["instances"], ids, rec["segments_info"])


def test_lsj_real_record_and_empty_after_crop(records):
    rec = records[1]
    torch.manual_seed(1)
    np.random.seed(1)
    lsj = PanopticMapper(is_train=True, augmentations=PanopticMapper.lsj_augmentations(64))
    for _ in range(4):
        out = lsj(rec)
        _, h, w = out["image"].shape
        assert h <= 64 and w <= 64
        assert out["sem_seg"].shape == (h, w)
        assert out["instances"].gt_masks.tensor.shape[1:] == (h, w)
        inst = out["instances"]
        # masks are disjoint and agree with the (identically transformed) semantic map
        assert inst.gt_masks.tensor.sum(0).max() <= 1
        for mask, c in zip(inst.gt_masks.tensor, inst.gt_classes):
            assert mask.any() and (out["sem_seg"][mask] == c).all()

    # a fixed crop around one small thing: every segment absent from the window is dropped
    pan = _pan_ids(rec)
    thing = next(s for s in rec["segments_info"] if s["isthing"])
    x, y, bw, bh = thing["bbox"]
    crop = T.CropTransform(x, y, bw, bh)
    out = PanopticMapper(is_train=True, augmentations=[crop])(rec)
    assert out["image"].shape == (3, bh, bw)
    window = pan[y:y + bh, x:x + bw]
    _check_masks_match_ids(out["instances"], window, rec["segments_info"])
    assert len(out["instances"]) < len(rec["segments_info"])

    # nothing of any segment left: an empty Instances with (0, H, W) masks
    rec_void = copy.deepcopy(rec)
    rec_void["segments_info"] = [s for s in rec["segments_info"] if s["id"] not in set(
        np.unique(window).tolist())]
    empty = PanopticMapper(is_train=True, augmentations=[crop])(rec_void)["instances"]
    assert len(empty) == 0 and empty.gt_masks.tensor.shape == (0, bh, bw)
    assert empty.gt_classes.dtype == torch.int64


def test_size_divisibility_pads(records):
    rec = records[0]  # 144 x 184
    out = PanopticMapper(is_train=True, augmentations=[], size_divisibility=64)(rec)
    assert out["image"].shape == (3, 192, 192)
    assert (out["image"][:, 144:] == 128).all() and (out["image"][:, :, 184:] == 128).all()
    assert (out["sem_seg"][144:] == 255).all() and (out["sem_seg"][:, 184:] == 255).all()
    inst = out["instances"]
    assert inst.image_size == (192, 192) and not inst.gt_masks.tensor[:, 144:].any()
    assert (out["height"], out["width"]) == (144, 184)


def test_test_mode_image_only(records):
    rec = records[0]
    mapper = PanopticMapper(is_train=False, augmentations=PanopticMapper.test_augmentations(72))
    out = mapper(rec)
    assert "instances" not in out and "sem_seg" not in out
    assert set(out) == {"image", "height", "width", "image_id", "file_name"}
    assert out["image"].shape == (3, 72, 92)  # shortest edge 144 -> 72
    assert (out["height"], out["width"]) == (rec["height"], rec["width"])
