"""OV-LVIS: datasets/prepare_ov_lvis.py and the ov_lvis_* registration."""
import json
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES

from clipself.data.datasets.ov_lvis import register_ov_lvis

from tests.helpers import load_script, unique

# Real LVIS v1 ids: 1 aerosol_can (c), 2 air_conditioner (f), 13 applesauce (r).
_IDS = (1, 2, 13)


def _fake_lvis():
    by_id = {c["id"]: c for c in LVIS_CATEGORIES}
    categories = [dict(by_id[i], image_count=5, instance_count=7) for i in _IDS]
    images = [{"id": i, "height": 10, "width": 12, "neg_category_ids": [13, 2],
               "not_exhaustive_category_ids": [13, 1],
               "coco_url": f"http://images.cocodataset.org/train2017/{i:012d}.jpg"} for i in (1, 2)]
    anns = [{"id": k + 1, "image_id": image_id, "category_id": cat, "area": 20.0,
             "bbox": [1.0, 2.0, 4.0, 5.0], "segmentation": [[1.0, 2.0, 5.0, 2.0, 5.0, 7.0]]}
            for k, (image_id, cat) in enumerate([(1, 1), (1, 13), (2, 2), (2, 13)])]
    return {"info": {}, "licenses": [], "images": images, "annotations": anns,
            "categories": categories}


def test_metadata_split():
    prefix = unique("test_ov_lvis_meta")
    register_ov_lvis("/nonexistent", prefix=prefix)
    meta = MetadataCatalog.get(f"{prefix}_val")
    assert meta.evaluator_type == "lvis"
    assert len(meta.thing_classes) == 1203 and meta.thing_classes[0] == "aerosol_can"
    assert (len(meta.base_classes), len(meta.novel_classes)) == (866, 337)
    assert not set(meta.base_classes) & set(meta.novel_classes)
    assert set(meta.base_classes) | set(meta.novel_classes) == set(meta.thing_classes)
    assert "applesauce" in meta.novel_classes and "air_conditioner" in meta.base_classes
    assert meta.thing_dataset_id_to_contiguous_id[13] == 12
    assert meta.image_root.endswith(os.path.join("coco", ""))
    counts = {c["id"]: c["image_count"] for c in MetadataCatalog.get(f"{prefix}_train")
              .class_image_count}
    assert counts[13] == 0 and counts[2] > 0


def test_prepare_and_register(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "lvis"))
    os.makedirs(os.path.join(root, "coco", "train2017"))
    data = _fake_lvis()
    for name in ("lvis_v1_train.json", "lvis_v1_val.json"):
        with open(os.path.join(root, "lvis", name), "w") as f:
            json.dump(data, f)
    load_script("prepare_ov_lvis").main(["--root", root])

    with open(os.path.join(root, "lvis", "lvis_v1_train_base.json")) as f:
        base = json.load(f)
    with open(os.path.join(root, "lvis", "lvis_v1_train_cat_norare_info.json")) as f:
        info = json.load(f)
    assert [a["id"] for a in base["annotations"]] == [1, 3]
    assert [c["id"] for c in base["categories"]] == list(_IDS)
    assert [(c["image_count"], c["instance_count"]) for c in base["categories"]] == \
        [(5, 7), (5, 7), (0, 0)]
    assert [img["neg_category_ids"] for img in base["images"]] == [[2], [2]]
    assert [img["not_exhaustive_category_ids"] for img in base["images"]] == [[1], [1]]
    assert [c["image_count"] for c in info] == [5, 5, 0]
    assert [c["id"] for c in info] == list(_IDS) and info[2]["frequency"] == "r"

    prefix = unique("test_ov_lvis")
    register_ov_lvis(root, prefix=prefix)
    records = DatasetCatalog.get(f"{prefix}_train")
    assert [r["file_name"] for r in records] == [
        os.path.join(root, "coco", "train2017", f"{i:012d}.jpg") for i in (1, 2)]
    assert [[a["category_id"] for a in r["annotations"]] for r in records] == [[0], [1]]
    val = DatasetCatalog.get(f"{prefix}_val")
    assert [[a["category_id"] for a in r["annotations"]] for r in val] == [[0, 12], [1, 12]]


def test_missing_files_name_the_fix(tmp_path):
    prefix = unique("test_ov_lvis_missing")
    register_ov_lvis(str(tmp_path), prefix=prefix)
    with pytest.raises(FileNotFoundError) as err:
        DatasetCatalog.get(f"{prefix}_train")
    assert "lvis_v1_train_base.json" in str(err.value)
    assert "python datasets/prepare_ov_lvis.py" in str(err.value)
    with pytest.raises(FileNotFoundError, match="lvis_v1_val.json"):
        DatasetCatalog.get(f"{prefix}_val")
    with pytest.raises(FileNotFoundError, match="lvis_v1_train.json"):
        load_script("prepare_ov_lvis").main(["--root", str(tmp_path)])
