"""ADE20K-150: class table, the three prepare scripts and the ade20k_* registrations."""
import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import ADE20K_SEM_SEG_CATEGORIES
from panopticapi.utils import rgb2id
from PIL import Image

from clipself.data.datasets.ade20k import (
    ADE20K_150_CLASSES,
    ADE20K_150_THING_IDS,
    default_instance_catid_mapping,
    read_instance_catid_mapping,
    register_ade20k_instance,
    register_ade20k_panoptic,
    register_ade20k_sem_seg,
)

from tests.helpers import load_script, unique

# Category ids (0-based ADE-150 index) and instance-challenge class ids used below.
WALL, SKY, BED, PERSON = 0, 2, 7, 12
BED_INS, PERSON_INS = 1, 4


def _save(array, *parts):
    path = os.path.join(*parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


# Raw semantic labels (0 = unlabelled, label = category id + 1) and instance maps (R, G).
SEMANTIC = {
    "ADE_val_00000001": [[1, 1, 3, 3], [13, 13, 13, 0], [8, 8, 1, 1]],
    "ADE_val_00000002": [[3, 3, 3, 3], [3, 13, 13, 3], [3, 3, 3, 3]],
}
INSTANCE_R = {
    "ADE_val_00000001": [[0, 0, 0, 0], [4, 4, 0, 0], [1, 1, 0, 0]],
    "ADE_val_00000002": [[0, 0, 0, 0], [0, 4, 4, 0], [0, 0, 0, 0]],
}
INSTANCE_G = {
    "ADE_val_00000001": [[0, 0, 0, 0], [1, 2, 0, 0], [3, 3, 0, 0]],
    "ADE_val_00000002": [[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]],
}


def _fabricate(root, with_mapping=True):
    base = os.path.join(root, "ADEChallengeData2016")
    for stem in SEMANTIC:
        _save(SEMANTIC[stem], base, "annotations", "validation", stem + ".png")
        rgb = np.stack([INSTANCE_R[stem], INSTANCE_G[stem], np.zeros((3, 4))], axis=-1)
        _save(rgb, base, "annotations_instance", "validation", stem + ".png")
        _save(np.zeros((3, 4, 3)), base, "images", "validation", stem + ".jpg")
    if with_mapping:
        lines = ["Instacne100 SceneParsing150 FullADE20K"] + [
            f"{k}\t{cat + 1}\t{1000 + k}" for k, cat in default_instance_catid_mapping().items()]
        with open(os.path.join(base, "ade20k_instance_catid_mapping.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(base, "ade20k_instance_imgCatIds.json"), "w") as f:
            json.dump({"categories": [{"id": k, "name": "x"} for k in range(1, 101)]}, f)
    return base


def test_class_table():
    assert len(ADE20K_150_CLASSES) == 150 and len(ADE20K_150_THING_IDS) == 100
    # Same order as Detectron2's list (whose names are shorter synonyms).
    for ours, theirs in zip(ADE20K_150_CLASSES, ADE20K_SEM_SEG_CATEGORIES):
        assert theirs.split(",")[0].strip() in ours
    assert {ADE20K_150_CLASSES[i].split(",")[0] for i in (BED, PERSON)} == {"bed", "person"}
    assert WALL not in ADE20K_150_THING_IDS and SKY not in ADE20K_150_THING_IDS
    mapping = default_instance_catid_mapping()
    assert (mapping[BED_INS], mapping[PERSON_INS]) == (BED, PERSON)


def test_read_mapping(tmp_path):
    base = _fabricate(str(tmp_path))
    mapping = read_instance_catid_mapping(os.path.join(base, "ade20k_instance_catid_mapping.txt"))
    assert mapping == default_instance_catid_mapping()


def test_prepare_sem_seg(tmp_path):
    base = _fabricate(str(tmp_path))
    load_script("prepare_ade20k_sem_seg").main(["--root", str(tmp_path), "--splits", "val"])
    out = np.asarray(Image.open(os.path.join(
        base, "annotations_detectron2", "validation", "ADE_val_00000001.png")))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 0, 2, 2], [12, 12, 12, 255], [7, 7, 0, 0]])

    prefix = unique("test_ade_sem")
    register_ade20k_sem_seg(str(tmp_path), prefix=prefix)
    records = DatasetCatalog.get(f"{prefix}_val")
    assert len(records) == 2 and records[0]["sem_seg_file_name"].endswith("ADE_val_00000001.png")
    meta = MetadataCatalog.get(f"{prefix}_val")
    assert (meta.evaluator_type, meta.ignore_label) == ("sem_seg", 255)
    assert len(meta.stuff_classes) == 150


def test_prepare_ins_seg(tmp_path):
    root = str(tmp_path)
    base = _fabricate(root, with_mapping=False)  # falls back to the ascending mapping
    load_script("prepare_ade20k_ins_seg").main(["--root", root, "--splits", "val"])
    with open(os.path.join(base, "ade20k_instance_val.json")) as f:
        data = json.load(f)
    assert [img["id"] for img in data["images"]] == [1, 2]
    assert data["images"][0] == {"id": 1, "file_name": "ADE_val_00000001.jpg", "height": 3,
                                 "width": 4}
    assert [c["id"] for c in data["categories"]] == list(ADE20K_150_THING_IDS)
    anns = data["annotations"]
    # Sorted by (class, instance): bed#3, person#1, person#2 in image 1; person#1 in image 2.
    assert [(a["id"], a["image_id"], a["category_id"]) for a in anns] == \
        [(1, 1, BED), (2, 1, PERSON), (3, 1, PERSON), (4, 2, PERSON)]
    assert [a["area"] for a in anns] == [2, 1, 1, 2]
    assert anns[0]["bbox"] == [0.0, 2.0, 2.0, 1.0]
    mask = mask_util.decode(anns[3]["segmentation"])
    np.testing.assert_array_equal(mask, np.asarray(INSTANCE_R["ADE_val_00000002"]) == 4)

    prefix = unique("test_ade_ins")
    register_ade20k_instance(root, prefix=prefix)
    meta = MetadataCatalog.get(f"{prefix}_val")
    assert len(meta.thing_classes) == 100 and meta.evaluator_type == "coco"
    records = DatasetCatalog.get(f"{prefix}_val")
    person = ADE20K_150_THING_IDS.index(PERSON)
    assert [[a["category_id"] for a in r["annotations"]] for r in records] == \
        [[ADE20K_150_THING_IDS.index(BED), person, person], [person]]
    assert meta.thing_classes[person].startswith("person")


def test_prepare_pan_seg_and_register(tmp_path):
    root = str(tmp_path)
    base = _fabricate(root)
    prefix = unique("test_ade_pan")
    register_ade20k_panoptic(root, prefix=prefix)
    with pytest.raises(FileNotFoundError) as err:
        DatasetCatalog.get(f"{prefix}_val")
    assert "ade20k_panoptic_val.json" in str(err.value)
    assert "python datasets/prepare_ade20k_pan_seg.py" in str(err.value)

    load_script("prepare_ade20k_pan_seg").main(["--root", root, "--splits", "val"])
    with open(os.path.join(base, "ade20k_panoptic_val.json")) as f:
        data = json.load(f)
    assert len(data["categories"]) == 150
    assert sum(c["isthing"] for c in data["categories"]) == 100
    ann = data["annotations"][0]
    assert (ann["image_id"], ann["file_name"]) == (1, "ADE_val_00000001.png")
    pan = rgb2id(np.asarray(Image.open(os.path.join(base, "ade20k_panoptic_val", ann["file_name"]))
                            .convert("RGB")))
    category = {s["id"]: s["category_id"] for s in ann["segments_info"]}
    labels = np.vectorize(lambda i: category.get(int(i), -1))(pan)
    # Stuff from the semantic map, things from the instance map, unlabelled elsewhere.
    np.testing.assert_array_equal(labels, [[WALL, WALL, SKY, SKY], [PERSON, PERSON, -1, -1],
                                           [BED, BED, WALL, WALL]])
    assert pan[1, 0] != pan[1, 1]  # two person instances
    assert len({s["id"] for s in ann["segments_info"]}) == len(ann["segments_info"]) == 5
    assert sorted(s["area"] for s in ann["segments_info"]) == [1, 1, 2, 2, 4]
    wall = next(s for s in ann["segments_info"] if s["category_id"] == WALL)
    assert wall["bbox"] == [0, 0, 4, 3]

    load_script("prepare_ade20k_sem_seg").main(["--root", root, "--splits", "val"])
    records = DatasetCatalog.get(f"{prefix}_val")
    assert [r["image_id"] for r in records] == [1, 2]
    rec = records[1]
    assert set(rec) >= {"file_name", "image_id", "pan_seg_file_name", "sem_seg_file_name",
                        "segments_info"}
    assert rec["file_name"] == os.path.join(base, "images", "validation", "ADE_val_00000002.jpg")
    assert rec["sem_seg_file_name"] == os.path.join(
        base, "annotations_detectron2", "validation", "ADE_val_00000002.png")
    assert sorted((s["category_id"], s["isthing"]) for s in rec["segments_info"]) == \
        [(SKY, False), (PERSON, True)]
    meta = MetadataCatalog.get(f"{prefix}_val")
    assert meta.evaluator_type == "ade20k_panoptic_seg"
    assert (len(meta.thing_classes), len(meta.stuff_classes)) == (100, 150)
    assert meta.thing_dataset_id_to_contiguous_id[PERSON] == PERSON
    assert meta.json_file.endswith("ade20k_instance_val.json")


def test_pan_seg_missing_sem_seg_names_the_fix(tmp_path):
    root = str(tmp_path)
    _fabricate(root)
    load_script("prepare_ade20k_pan_seg").main(["--root", root, "--splits", "val"])
    prefix = unique("test_ade_pan_nosem")
    register_ade20k_panoptic(root, prefix=prefix)
    with pytest.raises(FileNotFoundError, match="prepare_ade20k_sem_seg.py"):
        DatasetCatalog.get(f"{prefix}_val")
