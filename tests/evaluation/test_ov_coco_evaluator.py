"""OVCOCOEvaluator on a hand-made COCO-format dataset, and Detectron2's LVISEvaluator on a hand-made
LVIS-format one.

COCO's AP for one class at one IoU threshold is the 101-point interpolated precision: for each
recall threshold r in {0, 0.01, ..., 1}, the largest precision reached at a recall >= r (0 when r
is never reached), averaged over the 101 thresholds.
"""
import json
import math
import uuid

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.data.datasets.lvis import load_lvis_json
from detectron2.evaluation import LVISEvaluator, print_csv_format
from detectron2.structures import Boxes, BoxMode, Instances

from clipself.evaluation import OVCOCOEvaluator, patch_lvis_numpy_aliases, per_class_ap50

# COCO ids are not contiguous on purpose: contiguous order = id order = cat, dog, car, boat, bird.
CATEGORIES = [(1, "cat"), (2, "dog"), (4, "car"), (5, "boat"), (7, "bird")]
NOVEL = ["cat", "bird"]
BASE = ["dog", "car", "boat"]
SIZE = 100  # every image is SIZE x SIZE


def _rect_polygon(x, y, w, h):
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def _write_coco(path, gt):
    """gt: {image_id: [(category_id, [x, y, w, h]), ...]} -> a COCO json at ``path``."""
    images, anns = [], []
    for image_id, objs in gt.items():
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": SIZE,
                       "height": SIZE})
        for cat_id, box in objs:
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat_id,
                         "bbox": box, "area": box[2] * box[3], "iscrowd": 0,
                         "segmentation": _rect_polygon(*box)})
    cats = [{"id": i, "name": n} for i, n in CATEGORIES]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))


def _register_coco(tmp_path, gt, base=BASE, novel=NOVEL):
    name = f"_test_ov_coco_{uuid.uuid4().hex[:8]}"
    json_file = tmp_path / f"{name}.json"
    _write_coco(json_file, gt)
    register_coco_instances(name, {}, str(json_file), str(tmp_path))
    if base is not None:
        MetadataCatalog.get(name).set(base_classes=list(base), novel_classes=list(novel))
    return name


def _instances(dets, with_masks=False):
    """dets: [(contiguous class, score, [x0, y0, x1, y1]), ...] -> Instances."""
    inst = Instances((SIZE, SIZE))
    boxes = torch.tensor([d[2] for d in dets], dtype=torch.float32).reshape(-1, 4)
    inst.pred_boxes = Boxes(boxes)
    inst.scores = torch.tensor([d[1] for d in dets], dtype=torch.float32)
    inst.pred_classes = torch.tensor([d[0] for d in dets], dtype=torch.int64)
    if with_masks:
        masks = torch.zeros(len(dets), SIZE, SIZE, dtype=torch.bool)
        for m, (x0, y0, x1, y1) in zip(masks, boxes.long().tolist()):
            m[y0:y1, x0:x1] = True
        inst.pred_masks = masks
    return inst


def _evaluate(evaluator, preds, with_masks=False):
    evaluator.reset()
    for image_id, dets in preds.items():
        outputs = [{"instances": _instances(dets, with_masks)}]
        evaluator.process([{"image_id": image_id, "height": SIZE, "width": SIZE}], outputs)
    return evaluator.evaluate()


CAT, DOG, CAR, BOAT, BIRD = range(5)  # contiguous ids
GT = {
    1: [(1, [10, 10, 40, 40]), (2, [50, 50, 40, 40]), (4, [0, 60, 30, 30]), (5, [0, 0, 70, 20])],
    2: [(2, [10, 10, 30, 30]), (4, [50, 50, 40, 40])],
}
PREDS = {
    1: [
        (CAT, 0.9, [10, 10, 50, 50]),  # exact
        # dog GT x in [50, 90]; this box x in [60, 100]: IoU = 30 * 40 / (2 * 1600 - 30 * 40) = 0.6
        (DOG, 0.8, [60, 50, 100, 90]),
        (CAR, 0.9, [0, 60, 30, 90]),  # exact
        # boat GT x in [0, 70]; this box x in [30, 100]: IoU = 40 * 20 / (2 * 1400 - 40 * 20) = 0.4
        (BOAT, 0.95, [30, 0, 100, 20]),
        (BIRD, 0.5, [20, 20, 60, 60]),  # bird has no ground truth anywhere
    ],
    2: [
        (CAR, 0.8, [0, 0, 20, 20]),  # false positive
        (CAR, 0.7, [50, 50, 90, 90]),  # exact
    ],  # the dog of image 2 is missed
}
# Per-class AP50 (%), by hand:
# cat: one GT, one exact detection -> precision 1 at every recall threshold -> 100.
AP_CAT = 100.0
# dog: 2 GT, one detection at IoU 0.6 (a match at 0.5) -> recall 0.5 at precision 1; thresholds
# 0, 0.01, ..., 0.50 (51 of them) get 1, the other 50 get 0 -> 51 / 101.
AP_DOG = 100 * 51 / 101
# car: 2 GT; detections by score: 0.9 TP, 0.8 FP, 0.7 TP -> (recall, precision) = (0.5, 1),
# (0.5, 0.5), (1, 2/3); the envelope is 1 up to recall 0.5 (51 thresholds) and 2/3 above
# (50 thresholds) -> (51 + 50 * 2/3) / 101.
AP_CAR = 100 * (51 + 50 * 2 / 3) / 101
# boat: the only detection has IoU 0.4 < 0.5 -> a false positive, the GT is missed -> 0.
AP_BOAT = 0.0
# bird: no GT -> no AP (NaN), left out of every mean.
AP50_NOVEL = AP_CAT
AP50_BASE = (AP_DOG + AP_CAR + AP_BOAT) / 3
AP50_ALL = (AP_CAT + AP_DOG + AP_CAR + AP_BOAT) / 4


def test_ov_ap50_by_hand(tmp_path):
    name = _register_coco(tmp_path, GT)
    DatasetCatalog.get(name)  # as the test loader would: sets thing_classes and the id map
    evaluator = OVCOCOEvaluator(name, distributed=False)
    assert evaluator._max_dets_per_image == [100, 300, 1000]
    res = _evaluate(evaluator, PREDS)["bbox"]
    assert res["AP50_novel"] == pytest.approx(AP50_NOVEL)
    assert res["AP50_base"] == pytest.approx(AP50_BASE)
    assert res["AP50_all"] == pytest.approx(AP50_ALL)
    # COCO's AP50 is the same mean over the classes with GT, at the same maxDets (1000).
    assert res["AP50"] == pytest.approx(AP50_ALL)
    # the parent's results are kept: AP over IoU 0.5:0.95 per class
    assert res["AP-cat"] == pytest.approx(100.0)
    assert res["AP-boat"] == pytest.approx(0.0)
    assert math.isnan(res["AP-bird"])
    print_csv_format({"bbox": res})


def test_segm_gets_the_same_keys(tmp_path):
    # Rectangular masks on rectangular polygons: the mask IoUs are the box IoUs up to a pixel's
    # rasterisation, so every class lands on the same side of 0.5 and the AP50s are unchanged.
    name = _register_coco(tmp_path, GT)
    res = _evaluate(OVCOCOEvaluator(name, distributed=False), PREDS, with_masks=True)
    assert set(res) == {"bbox", "segm"}
    for key, value in (("novel", AP50_NOVEL), ("base", AP50_BASE), ("all", AP50_ALL)):
        assert res["segm"][f"AP50_{key}"] == pytest.approx(value)


def test_per_class_ap50(tmp_path):
    name = _register_coco(tmp_path, GT)
    evaluator = OVCOCOEvaluator(name, distributed=False)
    captured = {}

    def derive(coco_eval, iou_type, class_names=None):
        captured["aps"] = per_class_ap50(coco_eval)
        return OVCOCOEvaluator._derive_coco_results(evaluator, coco_eval, iou_type, class_names)

    evaluator._derive_coco_results = derive
    _evaluate(evaluator, PREDS)
    aps = captured["aps"] * 100
    assert aps[:4].tolist() == pytest.approx([AP_CAT, AP_DOG, AP_CAR, AP_BOAT])
    assert math.isnan(aps[BIRD])


def test_split_override(tmp_path):
    name = _register_coco(tmp_path, GT)
    evaluator = OVCOCOEvaluator(
        name, distributed=False, base_classes=["cat"], novel_classes=["dog", "car", "boat", "bird"]
    )
    res = _evaluate(evaluator, PREDS)["bbox"]
    assert res["AP50_base"] == pytest.approx(AP_CAT)
    assert res["AP50_novel"] == pytest.approx((AP_DOG + AP_CAR + AP_BOAT) / 3)
    assert res["AP50_all"] == pytest.approx(AP50_ALL)


def test_max_dets_per_image(tmp_path):
    # One cat GT; 100 higher-scored false positives come before the exact detection.
    name = _register_coco(tmp_path, {1: [(1, [10, 10, 40, 40])]})
    preds = {1: [(CAT, 0.9, [60, 60, 90, 90])] * 100 + [(CAT, 0.5, [10, 10, 50, 50])]}
    # maxDets 1000 keeps the TP: recall 1 at precision 1/101 -> envelope 1/101 everywhere.
    res = _evaluate(OVCOCOEvaluator(name, distributed=False), preds)["bbox"]
    assert res["AP50_novel"] == pytest.approx(100 / 101)
    # maxDets 100 drops it -> recall 0 -> AP 0.
    evaluator = OVCOCOEvaluator(name, distributed=False, max_dets_per_image=100)
    assert evaluator._max_dets_per_image == [1, 10, 100]
    assert _evaluate(evaluator, preds)["bbox"]["AP50_novel"] == 0.0


def test_no_predictions(tmp_path):
    name = _register_coco(tmp_path, GT)
    evaluator = OVCOCOEvaluator(name, distributed=False)
    res = _evaluate(evaluator, {1: [], 2: []})
    assert set(res) == {"bbox"}
    for key in ("AP", "AP50", "AP50_novel", "AP50_base", "AP50_all"):
        assert math.isnan(res["bbox"][key])
    evaluator.reset()
    assert evaluator.evaluate() == {}  # nothing processed at all, as COCOEvaluator


def test_bad_split(tmp_path):
    name = _register_coco(tmp_path, GT, base=None)
    with pytest.raises(ValueError, match="no base/novel split"):
        OVCOCOEvaluator(name, distributed=False)
    with pytest.raises(ValueError, match="not in"):
        OVCOCOEvaluator(name, distributed=False, base_classes=["dog"], novel_classes=["zebra"])
    with pytest.raises(ValueError, match="both base and novel"):
        OVCOCOEvaluator(name, distributed=False, base_classes=["dog"], novel_classes=["dog"])


# ---------------------------------------------------------------------------------------------
# LVIS: federated evaluation; APr / APc / APf average the classes of each frequency.

LVIS_CATEGORIES = [(1, "rare_thing", "r"), (2, "common_thing", "c"), (3, "frequent_thing", "f")]


def _register_lvis(tmp_path):
    name = f"_test_lvis_{uuid.uuid4().hex[:8]}"
    images = [
        # image 1: rare and common annotated; frequent_thing verified absent
        {"id": 1, "neg_category_ids": [3], "not_exhaustive_category_ids": []},
        # image 2: nothing annotated; only common_thing verified absent
        {"id": 2, "neg_category_ids": [2], "not_exhaustive_category_ids": []},
    ]
    for img in images:
        img.update(width=SIZE, height=SIZE,
                   coco_url=f"http://images.cocodataset.org/val2017/{img['id']:012d}.jpg")
    boxes = [(1, 1, [10, 10, 40, 40]), (1, 2, [0, 0, 70, 20])]  # (image, category, xywh)
    anns = [
        {"id": i + 1, "image_id": img, "category_id": cat, "bbox": box,
         "area": box[2] * box[3], "segmentation": _rect_polygon(*box)}
        for i, (img, cat, box) in enumerate(boxes)
    ]
    cats = [
        {"id": i, "name": n, "synset": f"{n}.n.01", "frequency": f, "image_count": 1,
         "instance_count": 1}
        for i, n, f in LVIS_CATEGORIES
    ]
    json_file = tmp_path / f"{name}.json"
    json_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    # register_lvis_instances needs a built-in LVIS name (for its metadata): register by hand,
    # as clipself.data.datasets.ov_lvis does.
    DatasetCatalog.register(name, lambda: load_lvis_json(str(json_file), str(tmp_path), None))
    MetadataCatalog.get(name).set(
        json_file=str(json_file), image_root=str(tmp_path), evaluator_type="lvis",
        thing_classes=[n for _, n, _ in LVIS_CATEGORIES],
    )
    return name


def test_lvis_evaluator_reports_apr(tmp_path):
    assert patch_lvis_numpy_aliases()  # done by importing clipself.evaluation; idempotent
    name = _register_lvis(tmp_path)
    dicts = DatasetCatalog.get(name)
    assert [d["image_id"] for d in dicts] == [1, 2]
    assert dicts[0]["annotations"][0]["bbox_mode"] == BoxMode.XYWH_ABS
    preds = {
        1: [
            (0, 0.9, [10, 10, 50, 50]),  # rare_thing, exact
            (1, 0.8, [30, 0, 100, 20]),  # common_thing at IoU 0.4: a false positive
            (2, 0.9, [60, 60, 90, 90]),  # frequent_thing, verified absent: a false positive
        ],
        # rare_thing is neither annotated nor verified absent in image 2 (federated): ignored
        2: [(0, 0.99, [0, 0, 50, 50])],
    }
    evaluator = LVISEvaluator(name, distributed=False)
    res = _evaluate(evaluator, preds, with_masks=True)
    assert set(res) == {"bbox", "segm"}
    for task in ("bbox", "segm"):
        assert res[task]["APr"] == pytest.approx(100.0)
        assert res[task]["APc"] == pytest.approx(0.0)
        # no frequent_thing GT: LVIS gives -1, which Detectron2 scales to -100 (not NaN)
        assert res[task]["APf"] == pytest.approx(-100.0)
        # AP averages rare (100) and common (0); frequent has no GT
        assert res[task]["AP"] == pytest.approx(50.0)
    print_csv_format(res)


def test_lvis_evaluator_without_predictions(tmp_path):
    name = _register_lvis(tmp_path)
    res = _evaluate(LVISEvaluator(name, distributed=False), {1: [], 2: []})
    assert all(math.isnan(v) for v in res["bbox"].values())
