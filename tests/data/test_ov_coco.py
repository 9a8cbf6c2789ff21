"""OV-COCO: class split, datasets/prepare_ov_coco.py and the ov_coco_* registration."""
import json
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from clipself.data.datasets.ov_coco import (
    OV_COCO_BASE_CLASSES,
    OV_COCO_CLASSES,
    OV_COCO_EXCLUDED_CLASSES,
    OV_COCO_NOVEL_CLASSES,
    register_ov_coco,
)

from tests.helpers import load_script, unique


def _cat_id(name):
    return next(c["id"] for c in COCO_CATEGORIES if c["name"] == name)


def _ann(ann_id, image_id, name):
    return {"id": ann_id, "image_id": image_id, "category_id": _cat_id(name), "iscrowd": 0,
            "area": 20.0, "bbox": [1.0, 2.0, 4.0, 5.0],
            "segmentation": [[1.0, 2.0, 5.0, 2.0, 5.0, 7.0, 1.0, 7.0]]}


def _write_coco(root, split, anns):
    things = [{"id": c["id"], "name": c["name"], "supercategory": "x"}
              for c in COCO_CATEGORIES if c["isthing"]]
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": 10, "width": 12} for i in (1, 2)]
    path = os.path.join(root, "coco", "annotations", f"instances_{split}2017.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"info": {}, "images": images, "annotations": anns, "categories": things}, f)
    os.makedirs(os.path.join(root, "coco", f"{split}2017"), exist_ok=True)


def test_class_split():
    things = [c["name"] for c in COCO_CATEGORIES if c["isthing"]]
    assert (len(OV_COCO_CLASSES), len(OV_COCO_BASE_CLASSES), len(OV_COCO_NOVEL_CLASSES)) == \
        (65, 48, 17)
    assert not set(OV_COCO_BASE_CLASSES) & set(OV_COCO_NOVEL_CLASSES)
    assert set(OV_COCO_BASE_CLASSES) | set(OV_COCO_NOVEL_CLASSES) == set(OV_COCO_CLASSES)
    assert sorted(OV_COCO_CLASSES + OV_COCO_EXCLUDED_CLASSES) == sorted(things)
    assert list(OV_COCO_CLASSES) == [n for n in things if n in OV_COCO_CLASSES]  # COCO id order
    assert set(OV_COCO_NOVEL_CLASSES) == {
        "airplane", "bus", "cat", "dog", "cow", "elephant", "umbrella", "tie", "snowboard",
        "skateboard", "cup", "knife", "cake", "couch", "keyboard", "sink", "scissors"}


def test_prepare_and_register(tmp_path):
    root = str(tmp_path)
    train = [_ann(1, 1, "person"), _ann(2, 1, "airplane"), _ann(3, 2, "traffic light"),
             _ann(4, 2, "toothbrush")]
    val = [_ann(1, 1, "person"), _ann(2, 1, "airplane"), _ann(3, 2, "traffic light"),
           _ann(4, 2, "scissors")]
    _write_coco(root, "train", train)
    _write_coco(root, "val", val)
    load_script("prepare_ov_coco").main(["--root", root])

    out = os.path.join(root, "coco", "annotations", "ov_coco")
    with open(os.path.join(out, "instances_train2017_base.json")) as f:
        train_out = json.load(f)
    with open(os.path.join(out, "instances_val2017_ov65.json")) as f:
        val_out = json.load(f)
    with open(os.path.join(out, "class_splits.json")) as f:
        splits = json.load(f)
    assert [a["id"] for a in train_out["annotations"]] == [1, 4]  # base classes only
    assert [a["id"] for a in val_out["annotations"]] == [1, 2, 4]  # the 65 classes
    for data in (train_out, val_out):
        assert [c["name"] for c in data["categories"]] == list(OV_COCO_CLASSES)
        assert len(data["images"]) == 2
    assert splits == {"base": list(OV_COCO_BASE_CLASSES), "novel": list(OV_COCO_NOVEL_CLASSES),
                      "all": list(OV_COCO_CLASSES)}

    prefix = unique("test_ov_coco")
    register_ov_coco(root, prefix=prefix)
    meta = MetadataCatalog.get(f"{prefix}_train")
    assert meta.evaluator_type == "coco"
    assert meta.thing_classes == list(OV_COCO_CLASSES)
    assert meta.thing_classes == MetadataCatalog.get(f"{prefix}_val").thing_classes
    assert meta.thing_dataset_id_to_contiguous_id[_cat_id("scissors")] == 63
    assert meta.base_classes == list(OV_COCO_BASE_CLASSES)
    assert meta.novel_classes == list(OV_COCO_NOVEL_CLASSES)
    assert meta.json_file.endswith("instances_train2017_base.json")

    records = DatasetCatalog.get(f"{prefix}_val")
    assert [r["image_id"] for r in records] == [1, 2]
    assert records[0]["file_name"] == os.path.join(root, "coco", "val2017", "000000000001.jpg")
    labels = [[a["category_id"] for a in r["annotations"]] for r in records]
    index = OV_COCO_CLASSES.index
    assert labels == [[index("person"), index("airplane")], [index("scissors")]]
    assert labels == [[0, 4], [63]]
    train_records = DatasetCatalog.get(f"{prefix}_train")
    assert [[a["category_id"] for a in r["annotations"]] for r in train_records] == \
        [[0], [index("toothbrush")]]


def test_missing_files_name_the_fix(tmp_path):
    prefix = unique("test_ov_coco_missing")
    register_ov_coco(str(tmp_path), prefix=prefix)  # no disk access at registration
    with pytest.raises(FileNotFoundError) as err:
        DatasetCatalog.get(f"{prefix}_train")
    assert "instances_train2017_base.json" in str(err.value)
    assert "python datasets/prepare_ov_coco.py" in str(err.value)
    with pytest.raises(FileNotFoundError, match="instances_train2017.json"):
        load_script("prepare_ov_coco").main(["--root", str(tmp_path)])
