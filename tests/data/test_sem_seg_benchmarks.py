"""CAT-Seg benchmarks: class tables, registration and the five prepare scripts on tiny fakes."""
import filecmp
import json
import os
import pickle

import numpy as np
import pytest
import scipy.io
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import SemSegEvaluator
from detectron2.evaluation.sem_seg_evaluation import load_image_into_numpy_array
from PIL import Image

from clipself.data.datasets.sem_seg_benchmarks import (
    COCO_STUFF_171_CLASSES,
    COCO_STUFF_171_IDS,
    PASCAL_CONTEXT_59_CLASSES,
    SEM_SEG_LAYOUT,
    VOC_21_CLASSES,
    register_sem_seg_benchmarks,
)

from tests.helpers import load_script, unique


def _register(root):
    """Register private copies of all benchmarks under ``root``; returns the name prefix."""
    prefix = unique("test") + "_"
    register_sem_seg_benchmarks(root, prefix=prefix)
    return prefix


def _save(array, path, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.fromarray(np.asarray(array, dtype=np.uint8))
    if mode == "P":
        image = image.convert("P")  # grey -> palette with index = value
        image.putpalette(sum(([i, 255 - i, i // 2] for i in range(256)), []))
    image.save(path)


def _read(path):
    return load_image_into_numpy_array(path, dtype=int)  # as SemSegEvaluator reads ground truth


def _evaluate_perfect(name):
    """SemSegEvaluator on ``name`` with a prediction equal to the ground truth (ignore aside)."""
    meta = MetadataCatalog.get(name)
    ev = SemSegEvaluator(name, distributed=False)
    ev.reset()
    for record in DatasetCatalog.get(name):
        gt = _read(record["sem_seg_file_name"])
        pred = np.where(gt == meta.ignore_label, 0, gt)
        scores = np.eye(len(meta.stuff_classes), dtype=np.float32)[pred].transpose(2, 0, 1)
        ev.process([{"file_name": record["file_name"]}], [{"sem_seg": torch.from_numpy(scores)}])
    return ev.evaluate()["sem_seg"]


def test_class_tables():
    assert len(COCO_STUFF_171_CLASSES) == len(set(COCO_STUFF_171_CLASSES)) == 171
    assert COCO_STUFF_171_CLASSES[0] == "person" and COCO_STUFF_171_CLASSES[79] == "toothbrush"
    assert COCO_STUFF_171_CLASSES[80] == "banner" and COCO_STUFF_171_CLASSES[-1] == "wood"
    assert len(set(COCO_STUFF_171_IDS)) == 171 and COCO_STUFF_171_IDS[79:81] == (90, 92)
    assert len(set(PASCAL_CONTEXT_59_CLASSES)) == 59
    assert len(VOC_21_CLASSES) == 21 and VOC_21_CLASSES[-1] == "background"


def test_builtin_registration_and_missing_files(tmp_path):
    expected = {
        "coco_2017_train_stuff_sem_seg": (255, "sem_seg", 171),
        "coco_2017_val_stuff_sem_seg": (255, "sem_seg", 171),
        "ade20k_full_sem_seg_train": (65535, "sem_seg", None),
        "ade20k_full_sem_seg_val": (65535, "sem_seg", None),
        "context_59_val_sem_seg": (255, "sem_seg", 59),
        "context_459_val_sem_seg": (459, "sem_seg", None),
        "voc_2012_val_sem_seg": (255, "sem_seg", 20),
        "voc_2012_val_background_sem_seg": (255, "sem_seg_background", 21),
    }
    assert set(SEM_SEG_LAYOUT) == set(expected)
    for name, (ignore, evaluator_type, num_classes) in expected.items():
        assert name in DatasetCatalog.list()  # registered on import
        meta = MetadataCatalog.get(name)
        assert (meta.ignore_label, meta.evaluator_type) == (ignore, evaluator_type)
        if num_classes:
            assert len(meta.stuff_classes) == num_classes

    prefix = _register(str(tmp_path))  # an empty root: errors name the prepare script
    os.makedirs(tmp_path / "coco" / "val2017")  # images there, labels not prepared
    with pytest.raises(FileNotFoundError, match="stuffthingmaps_detectron2.*prepare_coco_stuff"):
        DatasetCatalog.get(prefix + "coco_2017_val_stuff_sem_seg")
    with pytest.raises(FileNotFoundError, match="ade847_classes.json.*prepare_ade20k_full"):
        MetadataCatalog.get(prefix + "ade20k_full_sem_seg_val").stuff_classes
    with pytest.raises(FileNotFoundError, match="prepare_pascal_context_459"):
        MetadataCatalog.get(prefix + "context_459_val_sem_seg").stuff_classes


def test_prepare_coco_stuff(tmp_path):
    root = str(tmp_path)
    raw = {  # raw value = COCO-Stuff id - 1; 11 and 90 are unused thing ids (12, 91)
        "000000000001": [[0, 2, 11], [89, 91, 181]],
        "000000000002": [[255, 90, 0], [0, 0, 0]],
    }
    for stem, values in raw.items():
        _save(values, os.path.join(root, "coco", "stuffthingmaps", "val2017", stem + ".png"))
        _save(np.zeros((2, 3)), os.path.join(root, "coco", "val2017", stem + ".jpg"))
    load_script("prepare_coco_stuff").main(["--root", root, "--splits", "val"])
    out = os.path.join(root, "coco", "stuffthingmaps_detectron2", "val2017")
    # person 0, car 2, unused 255, toothbrush 79, banner 80, wood 170; 255 stays 255
    np.testing.assert_array_equal(_read(os.path.join(out, "000000000001.png")),
                                  [[0, 2, 255], [79, 80, 170]])
    np.testing.assert_array_equal(_read(os.path.join(out, "000000000002.png")),
                                  [[255, 255, 0], [0, 0, 0]])
    name = _register(root) + "coco_2017_val_stuff_sem_seg"
    records = DatasetCatalog.get(name)
    assert [os.path.basename(r["sem_seg_file_name"]) for r in records] == \
        ["000000000001.png", "000000000002.png"]
    assert MetadataCatalog.get(name).sem_seg_root == out


def test_prepare_voc(tmp_path):
    root = str(tmp_path)
    base = os.path.join(root, "VOCdevkit", "VOC2012")
    raw = {"2007_000001": [[0, 1, 20], [255, 15, 0]], "2007_000002": [[3, 3], [0, 255]],
           "2007_000003": [[1, 1], [1, 1]]}  # not in val.txt
    for stem, values in raw.items():
        _save(values, os.path.join(base, "SegmentationClass", stem + ".png"), mode="P")
        assert Image.open(os.path.join(base, "SegmentationClass", stem + ".png")).mode == "P"
        _save(np.zeros((2, 3)), os.path.join(base, "JPEGImages", stem + ".jpg"))
    os.makedirs(os.path.join(base, "ImageSets", "Segmentation"))
    with open(os.path.join(base, "ImageSets", "Segmentation", "val.txt"), "w") as f:
        f.write("2007_000001\n2007_000002\n")
    load_script("prepare_voc_sem_seg").main(["--root", root])
    voc20 = os.path.join(base, "annotations_detectron2", "val")
    voc21 = os.path.join(base, "annotations_detectron2_bg", "val")
    assert sorted(os.listdir(voc20)) == ["2007_000001.png", "2007_000002.png"]
    np.testing.assert_array_equal(_read(os.path.join(voc20, "2007_000001.png")),
                                  [[255, 0, 19], [255, 14, 255]])
    np.testing.assert_array_equal(_read(os.path.join(voc21, "2007_000001.png")),
                                  [[20, 0, 19], [255, 14, 20]])
    np.testing.assert_array_equal(_read(os.path.join(voc21, "2007_000002.png")),
                                  [[2, 2], [20, 255]])
    prefix = _register(root)
    records = DatasetCatalog.get(prefix + "voc_2012_val_background_sem_seg")
    assert [r["file_name"] for r in records] == \
        [os.path.join(base, "JPEGImages", f"2007_00000{i}.jpg") for i in (1, 2)]
    assert _evaluate_perfect(prefix + "voc_2012_val_sem_seg")["mIoU"] == pytest.approx(100.0)


def _fabricate_context(root, names):
    base = os.path.join(root, "VOCdevkit", "VOC2010")
    os.makedirs(os.path.join(base, "trainval"))
    os.makedirs(os.path.join(base, "ImageSets", "Main"))
    with open(os.path.join(base, "labels.txt"), "w") as f:
        f.write("".join(f"{i}: {name}\n" for i, name in enumerate(names, 1)))
    label_maps = {"2008_000001": [[0, 1, 2], [4, 62, 3]], "2008_000002": [[2, 2], [61, 0]]}
    for stem, values in label_maps.items():
        scipy.io.savemat(os.path.join(base, "trainval", stem + ".mat"),
                         {"LabelMap": np.asarray(values, dtype=np.uint16)})
        _save(np.zeros((2, 2)), os.path.join(base, "JPEGImages", stem + ".jpg"))
    _save(np.zeros((2, 2)), os.path.join(base, "JPEGImages", "2008_000009.jpg"))  # train image
    with open(os.path.join(base, "ImageSets", "Main", "val.txt"), "w") as f:
        f.write("2008_000001\n2008_000002\n")
    return base


# labels.txt of the fake: 1 accordion, 2 aeroplane, 3 air conditioner, 4.. the other 58 of PC-59
# (bag = 4, ..., wood = 61), 62 zebra.
_PC_NAMES = (["accordion", "aeroplane", "air conditioner"] + list(PASCAL_CONTEXT_59_CLASSES[1:])
             + ["zebra"])


def test_prepare_pascal_context_59(tmp_path):
    root = str(tmp_path)
    base = _fabricate_context(root, _PC_NAMES)
    load_script("prepare_pascal_context_59").main(["--root", root])
    out = os.path.join(base, "annotations_detectron2", "pc59_val")
    np.testing.assert_array_equal(_read(os.path.join(out, "2008_000001.png")),
                                  [[255, 255, 0], [1, 255, 255]])
    np.testing.assert_array_equal(_read(os.path.join(out, "2008_000002.png")),
                                  [[0, 0], [58, 255]])
    records = DatasetCatalog.get(_register(root) + "context_59_val_sem_seg")
    assert len(records) == 2  # the train image in JPEGImages is not a record

    os.remove(os.path.join(base, "labels.txt"))
    _fabricate_context(str(tmp_path / "bad"), _PC_NAMES[:-2])  # no "wood"
    with pytest.raises(ValueError, match="wood"):
        load_script("prepare_pascal_context_59").main(["--root", str(tmp_path / "bad")])


def test_prepare_pascal_context_459(tmp_path):
    root = str(tmp_path)
    base = _fabricate_context(root, _PC_NAMES)
    load_script("prepare_pascal_context_459").main(["--root", root])
    out = os.path.join(base, "annotations_detectron2", "pc459_val")
    # LabelMap - 1; unlabelled (0) -> 459; uint16 tif read back as SemSegEvaluator does
    path = os.path.join(out, "2008_000001.tif")
    assert Image.open(path).mode == "I;16"
    np.testing.assert_array_equal(_read(path), [[459, 0, 1], [3, 61, 2]])
    np.testing.assert_array_equal(_read(os.path.join(out, "2008_000002.tif")),
                                  [[1, 1], [60, 459]])
    with open(os.path.join(base, "pc459_classes.json")) as f:
        assert json.load(f)[:2] == [{"id": 1, "name": "accordion"}, {"id": 2, "name": "aeroplane"}]
    name = _register(root) + "context_459_val_sem_seg"
    assert MetadataCatalog.get(name).stuff_classes == _PC_NAMES
    metrics = _evaluate_perfect(name)  # 459 is ignored, not a class
    assert metrics["mIoU"] == pytest.approx(100.0) and metrics["pACC"] == pytest.approx(100.0)


# Fake ADE20K_2021_17_01: objectnames 0 wall, 1 person, 2 sky, 3 floor, 4 car, 5..299 thing<i>.
# Class value v = ADE index + 1; v = 300 (thing299) needs R = 10, G = 44.
_OBJECTNAMES = (["wall", "person, individual", "sky", "floor, flooring", "car"]
                + [f"thing{i}" for i in range(5, 300)])
_ADE_IMAGES = {  # stem -> (split folder, class values)
    "ADE_train_00000001": ("training/urban/street", [[1, 1, 3], [2, 300, 1]]),
    "ADE_train_00000002": ("training/home/kitchen", [[1, 5, 300], [3, 3, 0]]),
    # 4 x 6, 2 x 2 blocks; with --max-short-side 2 it becomes [[1, 3, 300], [2, 0, 5]]
    "ADE_val_00000001": ("validation/urban/street",
                         np.kron([[1, 3, 300], [2, 0, 5]], np.ones((2, 2), dtype=int))),
}


def _fabricate_ade_full(root):
    folders, filenames = [], []
    for stem, (sub, values) in _ADE_IMAGES.items():
        folder = f"ADE20K_2021_17_01/images/ADE/{sub}"
        values = np.asarray(values)
        seg = np.stack([values // 256 * 10, values % 256, np.full_like(values, 7)], axis=-1)
        _save(seg, os.path.join(root, folder, stem + "_seg.png"))
        rng = np.random.RandomState(len(folders))
        _save(rng.randint(0, 255, values.shape + (3,)), os.path.join(root, folder, stem + ".jpg"))
        folders.append(folder)
        filenames.append(stem + ".jpg")
    index = {"filename": filenames, "folder": folders, "objectnames": _OBJECTNAMES}
    with open(os.path.join(root, "ADE20K_2021_17_01", "index_ade20k.pkl"), "wb") as f:
        pickle.dump(index, f)
    return os.path.join(root, "ADE20K_2021_17_01")


def test_prepare_ade20k_full_by_frequency(tmp_path):
    root = str(tmp_path)
    base = _fabricate_ade_full(root)
    load_script("prepare_ade20k_full_sem_seg").main(
        ["--root", root, "--num-classes", "4", "--max-short-side", "2"])
    # training images per class: wall 2, sky 2, thing299 2, person 1, car 1 -> ties by index
    with open(os.path.join(base, "ade847_classes.json")) as f:
        classes = json.load(f)
    assert [(c["id"], c["name"], c["train_image_count"]) for c in classes] == \
        [(0, "wall", 2), (2, "sky", 2), (299, "thing299", 2), (1, "person, individual", 1)]
    ann = os.path.join(base, "annotations_detectron2")
    np.testing.assert_array_equal(_read(os.path.join(ann, "training", "ADE_train_00000001.tif")),
                                  [[0, 0, 1], [3, 2, 0]])
    np.testing.assert_array_equal(_read(os.path.join(ann, "validation", "ADE_val_00000001.tif")),
                                  [[0, 1, 2], [3, 65535, 65535]])
    images = os.path.join(base, "images_detectron2")
    assert Image.open(os.path.join(images, "validation", "ADE_val_00000001.jpg")).size == (3, 2)
    source = os.path.join(base, "images/ADE/training/urban/street/ADE_train_00000001.jpg")
    assert filecmp.cmp(os.path.join(images, "training", "ADE_train_00000001.jpg"), source,
                       shallow=False)  # small enough: copied as is

    name = _register(root) + "ade20k_full_sem_seg_val"
    assert MetadataCatalog.get(name).stuff_classes == \
        ["wall", "sky", "thing299", "person, individual"]
    assert len(DatasetCatalog.get(_register(root) + "ade20k_full_sem_seg_train")) == 2
    assert _evaluate_perfect(name)["mIoU"] == pytest.approx(100.0)  # 65535 is ignored


def test_prepare_ade20k_full_with_categories(tmp_path):
    root = str(tmp_path)
    base = _fabricate_ade_full(root)
    categories = tmp_path / "ade847.json"
    # names matched whole or by first synonym; ids of the reference list are not used
    categories.write_text(json.dumps(["sky", {"id": 99, "name": "person"}, "thing299"]))
    load_script("prepare_ade20k_full_sem_seg").main(
        ["--root", root, "--splits", "val", "--categories", str(categories),
         "--max-short-side", "2"])
    with open(os.path.join(base, "ade847_classes.json")) as f:
        assert json.load(f) == [{"id": 2, "name": "sky"}, {"id": 1, "name": "person"},
                                {"id": 299, "name": "thing299"}]
    np.testing.assert_array_equal(
        _read(os.path.join(base, "annotations_detectron2", "validation", "ADE_val_00000001.tif")),
        [[65535, 0, 2], [1, 65535, 65535]])

    categories.write_text(json.dumps(["sky", "unicorn"]))
    with pytest.raises(ValueError, match="unicorn"):
        load_script("prepare_ade20k_full_sem_seg").main(
            ["--root", root, "--splits", "val", "--categories", str(categories)])
