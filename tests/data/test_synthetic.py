"""The synthetic world on disk: COCO / panoptic / semantic / caption formats, the OV split, the
Detectron2 registration, and Detectron2's evaluators scoring ground truth against itself."""
import itertools
import json
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances
from panopticapi.utils import rgb2id
from PIL import Image
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from clipself.data.datasets.synthetic import prepare_world, register_synthetic
from clipself.synthetic import (
    ALL_CLASSES,
    BASE_CLASSES,
    NOVEL_CLASSES,
    THING_CLASSES,
    generate_scene,
)

NUM_TRAIN, NUM_VAL, SEED = 8, 6, 0
_PREFIXES = itertools.count()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("datasets"))
    paths = prepare_world(root, NUM_TRAIN, NUM_VAL, SEED, workers=1)
    prefix = f"synth_test{next(_PREFIXES)}_{os.getpid()}"
    register_synthetic(root, prefix=prefix)
    return {"root": root, "paths": paths, "prefix": prefix}


def _load(path):
    with open(path) as f:
        return json.load(f)


def _novel_ids():
    return {THING_CLASSES.index(n) + 1 for n in NOVEL_CLASSES}


def test_layout_and_meta(world):
    p = world["paths"]
    for split, n in (("train", NUM_TRAIN), ("val", NUM_VAL)):
        for key in (f"{split}_images", f"{split}_panoptic", f"{split}_semseg"):
            assert sorted(os.listdir(p[key])) == [f"{i:06d}.png" for i in range(n)]
    meta = _load(p["meta"])
    assert (meta["seed"], meta["num_train"], meta["num_val"]) == (SEED, NUM_TRAIN, NUM_VAL)
    assert meta["base_classes"] == list(BASE_CLASSES)
    assert meta["novel_classes"] == list(NOVEL_CLASSES)
    assert meta["stats"]["train"]["images"] == NUM_TRAIN


def test_train_annotates_base_only_but_novel_objects_are_there(world):
    p = world["paths"]
    train, train_all = _load(p["instances_train"]), _load(p["instances_train_all"])
    val = _load(p["instances_val"])
    assert len(train["categories"]) == len(val["categories"]) == 30
    novel = _novel_ids()
    assert train["annotations"] and not {a["category_id"] for a in train["annotations"]} & novel
    assert {a["category_id"] for a in train_all["annotations"]} & novel  # seen, not labelled
    assert len(train_all["annotations"]) > len(train["annotations"])
    assert {a["category_id"] for a in val["annotations"]} & novel
    assert val == _load(p["instances_val_all"])
    # the panoptic / semantic training annotations hide novel things too (void / 255)
    pan = _load(p["panoptic_train"])
    assert not {s["category_id"] for a in pan["annotations"] for s in a["segments_info"]} & novel


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_instances_load_and_match_masks(world, split):
    coco = COCO(world["paths"][f"instances_{split}_all"])
    assert sorted(coco.getCatIds()) == list(range(1, 31))
    assert len(coco.getImgIds()) == (NUM_TRAIN if split == "train" else NUM_VAL)
    for ann in coco.loadAnns(coco.getAnnIds()):
        img = coco.loadImgs(ann["image_id"])[0]
        m = coco.annToMask(ann)
        assert m.shape == (img["height"], img["width"])
        ys, xs = np.nonzero(m)
        x, y, w, h = ann["bbox"]
        assert (x, y, x + w - 1, y + h - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
        assert ann["area"] == int(m.sum()) and ann["iscrowd"] == 0
        assert list(mask_util.toBbox(ann["segmentation"])) == ann["bbox"]


@pytest.mark.parametrize("split", ["train", "val"])
def test_panoptic_and_semantic_pngs(world, split):
    p = world["paths"]
    pan_json = _load(p[f"panoptic_{split}"])
    cats = {c["id"]: c for c in pan_json["categories"]}
    assert len(cats) == 35 and sum(c["isthing"] for c in cats.values()) == 30
    instances = _load(p[f"instances_{split}"])
    n_things = {}
    for a in instances["annotations"]:
        n_things[a["image_id"]] = n_things.get(a["image_id"], 0) + 1
    for ann in pan_json["annotations"]:
        pan = rgb2id(np.asarray(Image.open(os.path.join(p[f"{split}_panoptic"], ann["file_name"]))))
        sem = np.asarray(Image.open(os.path.join(p[f"{split}_semseg"], ann["file_name"])))
        segs = ann["segments_info"]
        assert set(np.unique(pan).tolist()) - {0} == {s["id"] for s in segs}
        for s in segs:
            m = pan == s["id"]
            ys, xs = np.nonzero(m)
            x, y, w, h = s["bbox"]
            assert (x, y, x + w - 1, y + h - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
            assert s["area"] == int(m.sum())
            assert (sem[m] == s["category_id"] - 1).all()
        assert ((pan == 0) == (sem == 255)).all()
        assert sum(cats[s["category_id"]]["isthing"] for s in segs) == n_things.get(
            ann["image_id"], 0)


def test_captions_mention_every_object(world):
    p = world["paths"]
    for split in ("train", "val"):
        caps = {a["image_id"]: a["caption"] for a in _load(p[f"captions_{split}"])["annotations"]}
        inst = _load(p[f"instances_{split}_all"])
        assert len(caps) == len(inst["images"])
        names = {c["id"]: c["name"] for c in inst["categories"]}
        for a in inst["annotations"]:
            colour, shape = names[a["category_id"]].split()
            assert colour in caps[a["image_id"]] and shape in caps[a["image_id"]]
        scene = generate_scene(SEED, split, 0)
        assert caps[1] == scene["caption"]


def test_registered_datasets(world):
    pre, root = world["prefix"], world["root"]
    det = DatasetCatalog.get(f"{pre}_ovd_train")
    assert len(det) == NUM_TRAIN
    base_contiguous = {THING_CLASSES.index(n) for n in BASE_CLASSES}
    for d in det:
        assert os.path.isfile(d["file_name"])
        for a in d["annotations"]:
            assert a["category_id"] in base_contiguous and a["bbox_mode"] == BoxMode.XYWH_ABS
    meta = MetadataCatalog.get(f"{pre}_ovd_val")
    assert meta.thing_classes == list(THING_CLASSES) and meta.evaluator_type == "coco"
    assert meta.thing_dataset_id_to_contiguous_id == {i + 1: i for i in range(30)}
    assert set(meta.base_classes) | set(meta.novel_classes) == set(meta.thing_classes)
    assert meta.image_root.startswith(root) and os.path.isfile(meta.json_file)
    assert len(DatasetCatalog.get(f"{pre}_ovd_val")) == NUM_VAL

    pan = DatasetCatalog.get(f"{pre}_panoptic_val")
    pmeta = MetadataCatalog.get(f"{pre}_panoptic_val")
    assert pmeta.stuff_classes == list(ALL_CLASSES) and pmeta.label_divisor == 1000
    assert pmeta.evaluator_type == "coco_panoptic_seg" and pmeta.ignore_label == 255
    assert pmeta.json_file.endswith("instances_val_all.json")
    for key in ("panoptic_root", "panoptic_json", "json_file"):
        assert os.path.exists(getattr(pmeta, key))
    r = pan[0]
    assert {"file_name", "image_id", "pan_seg_file_name", "sem_seg_file_name",
            "segments_info"} <= set(r)
    for s in r["segments_info"]:
        assert s["isthing"] == (s["category_id"] < 30)

    sem = DatasetCatalog.get(f"{pre}_sem_seg_train")
    assert len(sem) == NUM_TRAIN and os.path.isfile(sem[0]["sem_seg_file_name"])
    assert MetadataCatalog.get(f"{pre}_sem_seg_val").evaluator_type == "sem_seg"

    for name in ("panoptic_train", "sem_seg_train"):  # novel things are void there
        seen = MetadataCatalog.get(f"{pre}_{name}").seen_classes
        assert len(seen) == len(ALL_CLASSES) - len(NOVEL_CLASSES)
        assert not set(seen) & set(NOVEL_CLASSES)
    assert not MetadataCatalog.get(f"{pre}_panoptic_val").get("seen_classes")

    caps = DatasetCatalog.get(f"{pre}_captions_train")
    assert len(caps) == NUM_TRAIN and caps[0]["caption"].startswith("a photo of ")
    assert {"file_name", "image_id", "height", "width", "caption"} <= set(caps[0])


def test_missing_world_gives_a_clear_error(world, tmp_path):
    prefix = f"synth_missing_{os.getpid()}"
    register_synthetic(str(tmp_path), prefix=prefix)  # registering touches no file
    for kind in ("ovd_train", "panoptic_val", "sem_seg_val", "captions_train"):
        with pytest.raises(FileNotFoundError) as e:
            DatasetCatalog.get(f"{prefix}_{kind}")
        msg = str(e.value)
        assert str(tmp_path) in msg and "python datasets/prepare_synthetic.py --root" in msg
    # registering the prefix again points it at another root
    register_synthetic(world["root"], prefix=prefix)
    assert len(DatasetCatalog.get(f"{prefix}_ovd_train")) == NUM_TRAIN
    assert MetadataCatalog.get(f"{prefix}_ovd_train").image_root.startswith(world["root"])


def _gt_instances(record, height, width):
    anns = record["annotations"]
    inst = Instances((height, width))
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.ones(len(anns))
    inst.pred_classes = torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)
    masks = [mask_util.decode(a["segmentation"]) for a in anns]
    inst.pred_masks = torch.from_numpy(np.stack(masks).astype(bool)) if masks else torch.zeros(
        (0, height, width), dtype=torch.bool)
    return inst


def test_coco_evaluator_scores_ground_truth_100(world):
    from detectron2.evaluation import COCOEvaluator

    name = f"{world['prefix']}_ovd_val"
    evaluator = COCOEvaluator(name, tasks=("bbox", "segm"), distributed=False,
                              use_fast_impl=False)
    evaluator.reset()
    for r in DatasetCatalog.get(name):
        evaluator.process([{"image_id": r["image_id"]}],
                          [{"instances": _gt_instances(r, r["height"], r["width"])}])
    res = evaluator.evaluate()
    assert res["bbox"]["AP"] == pytest.approx(100.0)
    assert res["segm"]["AP"] == pytest.approx(100.0)


def test_panoptic_and_sem_seg_evaluators_score_ground_truth_100(world):
    from detectron2.evaluation import COCOPanopticEvaluator, SemSegEvaluator

    name = f"{world['prefix']}_panoptic_val"
    pan_eval = COCOPanopticEvaluator(name)
    sem_eval = SemSegEvaluator(f"{world['prefix']}_sem_seg_val", distributed=False)
    pan_eval.reset()
    sem_eval.reset()
    for r in DatasetCatalog.get(name):
        pan = rgb2id(np.asarray(Image.open(r["pan_seg_file_name"])))
        segments = [{"id": s["id"], "category_id": s["category_id"], "isthing": s["isthing"]}
                    for s in r["segments_info"]]
        inputs = [{"file_name": r["file_name"], "image_id": r["image_id"]}]
        pan_eval.process(inputs, [{"panoptic_seg": (torch.from_numpy(pan.astype(np.int32)),
                                                    segments)}])
        sem = torch.from_numpy(np.asarray(Image.open(r["sem_seg_file_name"])).astype(np.int64))
        logits = torch.nn.functional.one_hot(sem.clamp(max=len(ALL_CLASSES) - 1),
                                             len(ALL_CLASSES)).permute(2, 0, 1).float()
        sem_eval.process(inputs, [{"sem_seg": logits}])
    pq = pan_eval.evaluate()["panoptic_seg"]
    assert pq["PQ"] == pytest.approx(100.0) and pq["PQ_th"] == pytest.approx(100.0)
    assert pq["PQ_st"] == pytest.approx(100.0)
    assert sem_eval.evaluate()["sem_seg"]["mIoU"] == pytest.approx(100.0)
