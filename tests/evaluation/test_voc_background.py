"""VOCbEvaluator (background = last class, extra classes clamped to it) and the dispatcher."""
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import SemSegEvaluator
from PIL import Image

from clipself.evaluation import VOCbEvaluator, evaluator_for_dataset

# Two 2 x 2 images, classes a = 0, b = 1, background = 2, 255 = ignore.
GT = [[[0, 1], [2, 255]], [[2, 2], [0, 1]]]
# Argmax over 5 model classes: 3 and 4 are extra background names -> background (2).
PRED = [[[0, 3], [4, 1]], [[2, 4], [0, 0]]]


def _register(tmp_path, name, evaluator_type):
    records = []
    for i, gt in enumerate(GT):
        path = os.path.join(str(tmp_path), f"{i}.png")
        Image.fromarray(np.asarray(gt, dtype=np.uint8)).save(path)
        records.append({"file_name": f"{i}.jpg", "sem_seg_file_name": path})
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(stuff_classes=["a", "b", "background"], ignore_label=255,
                                  evaluator_type=evaluator_type)
    return records


def test_vocb_evaluator_by_hand(tmp_path):
    name = f"_test_vocb_{os.getpid()}"
    records = _register(tmp_path, name, "sem_seg_background")
    ev = evaluator_for_dataset(name, distributed=False)
    assert isinstance(ev, VOCbEvaluator) and ev.background_id == 2
    ev.reset()
    for record, pred in zip(records, PRED):
        scores = torch.nn.functional.one_hot(torch.tensor(pred), 5).permute(2, 0, 1).float()
        ev.process([record], [{"sem_seg": scores}])
    res = ev.evaluate()["sem_seg"]
    # valid (gt, pred) pairs: (0,0) (1,2) (2,2) | (2,2) (2,2) (0,0) (1,0)
    # a: TP 2, GT 2, pred 3 -> 2/3; b: TP 0, GT 2, pred 0 -> 0; bg: TP 3, GT 3, pred 4 -> 3/4
    assert res["IoU-a"] == pytest.approx(100 * 2 / 3)
    assert res["IoU-b"] == pytest.approx(0.0)
    assert res["IoU-background"] == pytest.approx(75.0)
    assert res["mIoU"] == pytest.approx(100 * (2 / 3 + 0 + 3 / 4) / 3)
    assert res["pACC"] == pytest.approx(100 * 5 / 7)
    assert res["mACC"] == pytest.approx(100 * (1 + 0 + 1) / 3)

    with pytest.raises(ValueError, match="score channels"):
        ev.process([records[0]], [{"sem_seg": torch.zeros(2, 2, 2)}])


def test_evaluator_for_dataset_dispatch(tmp_path):
    name = f"_test_semseg_{os.getpid()}"
    _register(tmp_path, name, "sem_seg")
    ev = evaluator_for_dataset(name, distributed=False)
    assert type(ev) is SemSegEvaluator
    MetadataCatalog.remove(name)
    MetadataCatalog.get(name).set(stuff_classes=["a"], evaluator_type="coco")
    with pytest.raises(ValueError, match="coco"):
        evaluator_for_dataset(name)
