"""InstanceSegEvaluator: mask AP when thing classes are not the first contiguous ids (ADE20K)."""
import itertools
import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, Instances

from clipself.evaluation import InstanceSegEvaluator, unmap_category_ids

_COUNTER = itertools.count()


def _masks():
    m = np.zeros((2, 8, 8), dtype=bool)
    m[0, :3, :3] = True
    m[1, 4:7, 2:8] = True
    return m


def _fabricate(root):
    """Classes [sky (stuff), a (thing, dataset id 7)]: the thing is contiguous id 1, not 0."""
    annotations = []
    for k, m in enumerate(_masks()):
        rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        ys, xs = np.nonzero(m)
        annotations.append({
            "id": k + 1, "image_id": 1, "category_id": 7, "segmentation": rle, "iscrowd": 0,
            "area": int(m.sum()), "bbox": [int(xs.min()), int(ys.min()),
                                           int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]})
    coco = {"images": [{"id": 1, "file_name": "img.jpg", "height": 8, "width": 8}],
            "annotations": annotations, "categories": [{"id": 7, "name": "a"}]}
    json_file = os.path.join(root, "instances.json")
    with open(json_file, "w") as f:
        json.dump(coco, f)
    name = f"test_instance_seg_evaluator_{os.getpid()}_{next(_COUNTER)}"
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(
        json_file=json_file, thing_classes=["a"], stuff_classes=["sky", "a"],
        thing_dataset_id_to_contiguous_id={7: 1},
    )
    return name


def _outputs(classes, scores):
    masks = torch.from_numpy(_masks())
    masks = torch.cat([masks, masks[:1]])[: len(classes)]
    inst = Instances((8, 8))
    inst.pred_masks = masks
    inst.pred_boxes = Boxes(torch.zeros(len(classes), 4))
    inst.scores = torch.tensor(scores)
    inst.pred_classes = torch.tensor(classes)
    return [{"instances": inst}]


def _evaluate(evaluator, outputs):
    evaluator.reset()
    evaluator.process([{"image_id": 1, "height": 8, "width": 8}], outputs)
    return evaluator.evaluate()


def test_unmap_category_ids_drops_non_things():
    results = [{"category_id": 1, "score": 0.5}, {"category_id": 0, "score": 0.9}]
    assert unmap_category_ids(results, {7: 1}) == [{"category_id": 7, "score": 0.5}]
    with pytest.raises(ValueError, match="injective"):
        unmap_category_ids(results, {7: 1, 8: 1})


def test_interleaved_thing_ids_give_exact_ap(tmp_path):
    name = _fabricate(str(tmp_path))
    with pytest.raises(AssertionError):  # why the evaluator exists
        coco = COCOEvaluator(name, tasks=("segm",), distributed=False)
        _evaluate(coco, _outputs([1, 1], [0.9, 0.8]))
    ev = InstanceSegEvaluator(name, tasks=("segm",), distributed=False)
    # both things found, plus a confident prediction of the stuff class: dropped, not an error
    perfect = _evaluate(ev, _outputs([1, 1, 0], [0.9, 0.8, 0.99]))
    assert perfect["segm"]["AP"] == pytest.approx(100.0)
    # one thing only: recall 1/2 at every IoU -> AP 50 (101-point interpolation)
    half = _evaluate(ev, _outputs([1], [0.9]))
    assert half["segm"]["AP"] == pytest.approx(50.0, abs=1.0)
