"""COCO panoptic + semantic: datasets/prepare_coco_semantic_from_panoptic.py and registration."""
import json
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from panopticapi.utils import id2rgb
from PIL import Image

from clipself.data.datasets.coco_panoptic import register_coco_panoptic_with_sem_seg

from tests.helpers import load_script, unique

_BANNER, _LAST_STUFF = COCO_CATEGORIES[80]["id"], COCO_CATEGORIES[-1]["id"]  # 92, 200


def _fabricate(root):
    """Two val images: segment ids in PNGs, (segment id -> COCO category id) in the json."""
    pan_dir = os.path.join(root, "coco", "panoptic_val2017")
    os.makedirs(pan_dir)
    os.makedirs(os.path.join(root, "coco", "annotations"))
    os.makedirs(os.path.join(root, "coco", "val2017"))
    maps = {
        1: (np.array([[0, 0, 7, 7], [300, 300, 7, 70000]]),
            [(7, 1), (300, _BANNER), (70000, 18)]),  # person, banner (stuff), dog
        2: (np.array([[5, 5, 5, 0], [5, 5, 5, 0]]), [(5, _LAST_STUFF)]),
    }
    images, anns = [], []
    for image_id, (ids, segments) in maps.items():
        name = f"{image_id:012d}"
        Image.fromarray(id2rgb(ids)).save(os.path.join(pan_dir, name + ".png"))
        Image.new("RGB", (4, 2)).save(os.path.join(root, "coco", "val2017", name + ".jpg"))
        images.append({"id": image_id, "file_name": name + ".jpg", "height": 2, "width": 4})
        anns.append({"image_id": image_id, "file_name": name + ".png", "segments_info": [
            {"id": s, "category_id": c, "iscrowd": 0, "area": 1, "bbox": [0, 0, 1, 1]}
            for s, c in segments]})
    categories = [{k: c[k] for k in ("id", "name", "isthing")} for c in COCO_CATEGORIES]
    with open(os.path.join(root, "coco", "annotations", "panoptic_val2017.json"), "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": categories}, f)


def test_metadata():
    prefix = unique("test_coco_pan_meta")
    register_coco_panoptic_with_sem_seg("/nonexistent", prefix=prefix)
    meta = MetadataCatalog.get(f"{prefix}_val_panoptic_with_sem_seg")
    assert meta.evaluator_type == "coco_panoptic_seg"
    assert (len(meta.thing_classes), len(meta.stuff_classes)) == (80, 133)
    assert meta.stuff_classes[:80] == meta.thing_classes
    assert meta.thing_dataset_id_to_contiguous_id[90] == 79  # toothbrush
    assert meta.stuff_dataset_id_to_contiguous_id[_BANNER] == 80
    assert len(meta.stuff_dataset_id_to_contiguous_id) == 133
    assert (meta.label_divisor, meta.ignore_label) == (1000, 255)
    assert meta.json_file.endswith(os.path.join("annotations", "instances_val2017.json"))
    assert meta.panoptic_json.endswith("panoptic_val2017.json")


def test_prepare_and_register(tmp_path):
    root = str(tmp_path)
    _fabricate(root)
    prefix = unique("test_coco_pan")
    register_coco_panoptic_with_sem_seg(root, prefix=prefix)
    with pytest.raises(FileNotFoundError) as err:  # semantic maps not made yet
        DatasetCatalog.get(f"{prefix}_val_panoptic_with_sem_seg")
    assert "panoptic_semseg_val2017" in str(err.value)
    assert "python datasets/prepare_coco_semantic_from_panoptic.py" in str(err.value)

    script = load_script("prepare_coco_semantic_from_panoptic")
    script.main(["--root", root, "--splits", "val", "--workers", "2"])
    sem_dir = os.path.join(root, "coco", "panoptic_semseg_val2017")
    sem1 = np.asarray(Image.open(os.path.join(sem_dir, "000000000001.png")))
    sem2 = np.asarray(Image.open(os.path.join(sem_dir, "000000000002.png")))
    assert sem1.dtype == np.uint8
    np.testing.assert_array_equal(sem1, [[255, 255, 0, 0], [80, 80, 0, 16]])  # dog = 17th thing
    np.testing.assert_array_equal(sem2, [[132, 132, 132, 255], [132, 132, 132, 255]])

    records = DatasetCatalog.get(f"{prefix}_val_panoptic_with_sem_seg")
    assert len(records) == 2
    rec = records[0]
    assert set(rec) >= {"file_name", "image_id", "pan_seg_file_name", "sem_seg_file_name",
                        "segments_info"}
    assert rec["file_name"] == os.path.join(root, "coco", "val2017", "000000000001.jpg")
    assert rec["sem_seg_file_name"] == os.path.join(sem_dir, "000000000001.png")
    assert os.path.exists(rec["pan_seg_file_name"])
    assert [(s["id"], s["category_id"], s["isthing"]) for s in rec["segments_info"]] == \
        [(7, 0, True), (300, 80, False), (70000, 16, True)]
    assert [(s["category_id"], s["isthing"]) for s in records[1]["segments_info"]] == \
        [(132, False)]


def test_unknown_category_names_the_file(tmp_path):
    root = str(tmp_path)
    _fabricate(root)
    path = os.path.join(root, "coco", "annotations", "panoptic_val2017.json")
    with open(path) as f:
        data = json.load(f)
    data["annotations"][0]["segments_info"][0]["category_id"] = 9999
    with open(path, "w") as f:
        json.dump(data, f)
    os.makedirs(os.path.join(root, "coco", "panoptic_semseg_val2017"))
    prefix = unique("test_coco_pan_bad")
    register_coco_panoptic_with_sem_seg(root, prefix=prefix)
    with pytest.raises(KeyError) as err:
        DatasetCatalog.get(f"{prefix}_val_panoptic_with_sem_seg")
    assert "panoptic_val2017.json" in str(err.value) and "category_id=9999" in str(err.value)
