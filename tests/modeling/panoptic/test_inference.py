"""clipself.modeling.panoptic.inference (docs/segmentation.md §5-§3.5) and Detectron2's
evaluators."""
import itertools
import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from panopticapi.utils import id2rgb
from PIL import Image
from pycocotools import mask as mask_util

from clipself.modeling.open_vocab import ENSEMBLE_MODES, ensemble_clip_logits, ensemble_for_mode
from clipself.modeling.panoptic.inference import (
    instance_inference,
    mask_pool,
    panoptic_inference,
    semantic_inference,
)

_COUNTER = itertools.count()


def _logits(masks, scale=10.0):
    return scale * (2 * masks.float() - 1)


def _log_probs(rows):
    return torch.tensor(rows, dtype=torch.float32).log()


# ------------------------------------------ ensemble (docs/segmentation.md §6)
def test_ensemble_for_mode():
    assert ensemble_for_mode("pred") == (0.0, 0.0)
    assert ensemble_for_mode("clip", 0.3, 0.7) == (1.0, 1.0)
    assert ensemble_for_mode("ensemble", 0.3, 0.7) == (0.3, 0.7)
    assert ENSEMBLE_MODES == ("pred", "clip", "ensemble")
    with pytest.raises(ValueError):
        ensemble_for_mode("mean")


def test_ensemble_formula_by_hand():
    pred = torch.tensor([[1.0, 0.0, -1.0, 0.5], [0.2, 2.0, 0.1, -3.0]])  # (Q=2, K+1=4)
    clip = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 5.0]])  # (2, K=3)
    seen = torch.tensor([True, False, True])
    alpha, beta = 0.3, 0.7
    out = ensemble_clip_logits(pred, clip, seen, alpha, beta)
    assert out.shape == (2, 4)
    for q in range(2):
        e = [math.exp(v) for v in pred[q].tolist()]
        p_void = e[3] / sum(e)
        P = [v / sum(e[:3]) for v in e[:3]]
        c = [math.exp(v) for v in clip[q].tolist()]
        C = [v / sum(c) for v in c]
        w = [alpha if s else beta for s in seen.tolist()]
        ens = [math.log(P[k] ** (1 - w[k]) * C[k] ** w[k]) for k in range(3)]
        s = [math.exp(v) for v in ens]
        probs = [v / sum(s) * (1 - p_void) for v in s] + [p_void]
        ref = torch.tensor([math.log(p + 1e-8) for p in probs])
        torch.testing.assert_close(out[q], ref)


def test_ensemble_modes():
    torch.manual_seed(0)
    pred, clip = torch.randn(5, 7), 10 * torch.randn(5, 6)
    seen = torch.tensor([True, False] * 3)
    # "pred": the learned (K+1)-way probabilities
    out = ensemble_clip_logits(pred, clip, seen, *ensemble_for_mode("pred"))
    torch.testing.assert_close(out.exp(), pred.softmax(-1) + 1e-8)
    # "clip": CLIP probabilities scaled by the learned non-void mass, void kept
    out = ensemble_clip_logits(pred, clip, seen, *ensemble_for_mode("clip"))
    p_void = pred.softmax(-1)[:, -1:]
    torch.testing.assert_close(out.exp()[:, :-1], clip.softmax(-1) * (1 - p_void) + 1e-8)
    torch.testing.assert_close(out.exp()[:, -1:], p_void + 1e-8)
    # extreme CLIP logits (log C = -inf in fp32) stay finite in "pred" mode
    out = ensemble_clip_logits(pred, torch.tensor([[0.0, -1e4, 0, 0, 0, 0]] * 5), seen, 0.0, 0.0)
    assert torch.isfinite(out).all()
    # softmax of the ensemble scores gives back the probabilities (usable as logits)
    out = ensemble_clip_logits(pred, clip, seen, 0.35, 0.65)
    torch.testing.assert_close(out.softmax(-1), out.exp(), atol=1e-6, rtol=1e-5)


# -------------------------------------- mask pooling (docs/segmentation.md §5)
def test_mask_pool_by_hand():
    dense = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[0.0, 3.0], [1.0, 0.0]]])  # (D=2, 2, 2)
    top_left = torch.zeros(4, 4)
    top_left[:2, :2] = 1
    top_row = torch.zeros(4, 4)
    top_row[:2] = 1
    soft = torch.full((4, 4), 0.4)
    soft[2:, 2:] = 0.6  # only the bottom-right cell is > 0.5 after resizing
    masks = torch.stack([top_left, top_row, soft, torch.zeros(4, 4)])  # (Q=4, 4, 4)
    out = mask_pool(dense, masks)
    assert out.shape == (4, 2)
    torch.testing.assert_close(out[0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(out[1], F.normalize(torch.tensor([0.5, 1.5]), dim=0))
    torch.testing.assert_close(out[2], torch.tensor([1.0, 0.0]))  # (2, 0) normalised
    torch.testing.assert_close(out[3], torch.zeros(2))  # empty mask -> zero vector
    # binary bool masks already at the grid size (no resize)
    out = mask_pool(dense, torch.tensor([[[True, False], [True, False]]]))
    torch.testing.assert_close(out[0], F.normalize(torch.tensor([1.0, 1.0]), dim=0))


# ---------------------------------------------------------------- semantic
def test_semantic_inference_matches_loop():
    torch.manual_seed(0)
    cls, masks = torch.randn(3, 5), torch.randn(3, 6, 7)
    out = semantic_inference(cls, masks)
    assert out.shape == (4, 6, 7)
    ref = sum(cls[q].softmax(-1)[:4, None, None] * masks[q].sigmoid()[None] for q in range(3))
    torch.testing.assert_close(out, ref)


# ---------------------------------------------------------------- panoptic
def _panoptic_loop(mask_cls, mask_pred, num_classes, thing_ids, thr, overlap):
    """Query-by-query reference of the Mask2Former merge (slow, for the test only)."""
    scores, labels = mask_cls.softmax(-1).max(-1)
    keep = labels.ne(num_classes) & (scores > thr)
    scores, labels, masks = scores[keep], labels[keep], mask_pred[keep].sigmoid()
    seg = torch.zeros(mask_pred.shape[-2:], dtype=torch.int32)
    info, stuff_ids, next_id = [], {}, 0
    if masks.shape[0] == 0:
        return seg, info
    owner = (scores[:, None, None] * masks).argmax(0)
    for q in range(masks.shape[0]):
        c = int(labels[q])
        isthing = c in thing_ids
        mask = (owner == q) & (masks[q] >= 0.5)
        area, original = int(mask.sum()), int((masks[q] >= 0.5).sum())
        if area == 0 or original == 0 or area / original < overlap:
            continue
        if not isthing and c in stuff_ids:
            seg[mask] = stuff_ids[c]
            continue
        next_id += 1
        if not isthing:
            stuff_ids[c] = next_id
        seg[mask] = next_id
        info.append({"id": next_id, "category_id": c, "isthing": isthing})
    return seg, info


def test_panoptic_inference_hand_made():
    K, H, W = 3, 8, 8
    m = torch.zeros(6, H, W)
    m[0, :4, :4] = 1  # stuff class 1
    m[1, 4:, :4] = 1  # stuff class 1 again -> merged with query 0
    m[2, :, 4:] = 1  # thing class 0, mostly covered by query 3 -> 2/8 < 0.8, dropped
    m[3, :6, 4:] = 1  # thing class 0, higher score
    m[4] = 1  # void
    m[5, :2] = 1  # below object_mask_threshold
    cls = _log_probs([
        [0.05, 0.9, 0.03, 0.02],
        [0.1, 0.8, 0.05, 0.05],
        [0.7, 0.1, 0.1, 0.1],
        [0.95, 0.02, 0.02, 0.01],
        [0.02, 0.04, 0.04, 0.9],
        [0.25, 0.25, 0.25, 0.25],
    ])
    seg, info = panoptic_inference(cls, _logits(m), num_classes=K, thing_ids={0},
                                   object_mask_threshold=0.5, overlap_threshold=0.8)
    assert seg.dtype == torch.int32 and seg.shape == (H, W)
    assert info == [
        {"id": 1, "category_id": 1, "isthing": False},
        {"id": 2, "category_id": 0, "isthing": True},
    ]
    expected = torch.zeros(H, W, dtype=torch.int32)
    expected[:, :4] = 1
    expected[:6, 4:] = 2
    assert torch.equal(seg, expected)  # rows 6-7 on the right: won by the dropped query -> void
    # nothing kept
    seg, info = panoptic_inference(cls[4:5], _logits(m[4:5]), num_classes=K, thing_ids={0})
    assert info == [] and seg.abs().sum() == 0


def test_panoptic_inference_matches_loop_reference():
    torch.manual_seed(0)
    K, thing_ids = 3, {0}
    num_segments = 0
    for trial in range(4):
        cls = 3 * torch.randn(12, K + 1)
        masks = 4 * torch.randn(12, 1, 4, 4) - 2
        masks = F.interpolate(masks, size=(16, 16), mode="bilinear")[:, 0]
        seg, info = panoptic_inference(cls, masks, num_classes=K, thing_ids=thing_ids,
                                       object_mask_threshold=0.2, overlap_threshold=0.5)
        ref_seg, ref_info = _panoptic_loop(cls, masks, K, thing_ids, 0.2, 0.5)
        assert info == ref_info and torch.equal(seg, ref_seg), trial
        num_segments += len(info)
    assert num_segments >= 6  # the random cases are not trivial


# ---------------------------------------------------------------- instances
def test_instance_inference():
    m = torch.zeros(3, 6, 6)
    m[0, :3] = 1
    m[1, 3:] = 1
    mask_logits = _logits(m)
    mask_logits[2] = -5.0  # empty mask -> score 0
    cls = _log_probs([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]])
    inst = instance_inference(cls, mask_logits, num_classes=2, topk=4)
    assert inst.image_size == (6, 6) and len(inst) == 4
    assert inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape == (4, 6, 6)
    assert inst.pred_boxes.tensor.abs().sum() == 0
    # top-4 of [0.6, 0.3 | 0.2, 0.7 | 0.5, 0.4]: 0.7 (q1, c1), 0.6 (q0, c0), 0.5 (q2, c0), 0.4
    assert inst.pred_classes.tolist() == [1, 0, 0, 1]
    sig = torch.sigmoid(torch.tensor(10.0))
    torch.testing.assert_close(inst.scores, torch.tensor([0.7 * sig, 0.6 * sig, 0.0, 0.0]))
    assert torch.equal(inst.pred_masks[0], m[1].bool())
    things = instance_inference(cls, mask_logits, num_classes=2, thing_ids={1}, topk=4)
    assert things.pred_classes.tolist() == [1, 1]


# ---------------------------------------------------------------- Detectron2 evaluators
def _fabricate_dataset(root):
    """One 8x8 image: two 'a' things (dataset id 1) + 'sky' stuff (dataset id 5)."""
    ids = np.full((8, 8), 30, dtype=np.int64)  # segment 30: stuff
    ids[:3, :3] = 10  # thing instance 1
    ids[4:7, 4:7] = 20  # thing instance 2
    os.makedirs(os.path.join(root, "pan"))
    Image.fromarray(id2rgb(ids)).save(os.path.join(root, "pan", "img1.png"))
    sem = np.where(ids == 30, 1, 0).astype(np.uint8)  # contiguous ids
    Image.fromarray(sem).save(os.path.join(root, "sem.png"))
    categories = [{"id": 1, "name": "a", "isthing": 1}, {"id": 5, "name": "sky", "isthing": 0}]
    segments = [(10, 1), (20, 1), (30, 5)]
    ann = {"image_id": 1, "file_name": "img1.png", "segments_info": [
        {"id": s, "category_id": c, "iscrowd": 0, "area": int((ids == s).sum()),
         "bbox": [0, 0, 1, 1]} for s, c in segments]}
    images = [{"id": 1, "file_name": "img1.jpg", "height": 8, "width": 8}]
    with open(os.path.join(root, "pan.json"), "w") as f:
        json.dump({"images": images, "annotations": [ann], "categories": categories}, f)

    annotations = []
    for s in (10, 20):
        ys, xs = np.nonzero(ids == s)
        rle = mask_util.encode(np.asfortranarray((ids == s).astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        annotations.append({
            "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()) + 1,
                     int(ys.max() - ys.min()) + 1],
            "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "segmentation": rle, "iscrowd": 0,
        })
    record = {"file_name": os.path.join(root, "img1.jpg"), "image_id": 1, "height": 8,
              "width": 8, "sem_seg_file_name": os.path.join(root, "sem.png"),
              "annotations": annotations}
    name = f"test_panoptic_inference_{os.getpid()}_{next(_COUNTER)}"
    DatasetCatalog.register(name, lambda: [record])
    MetadataCatalog.get(name).set(
        panoptic_json=os.path.join(root, "pan.json"),
        panoptic_root=os.path.join(root, "pan"),
        thing_classes=["a"],
        stuff_classes=["a", "sky"],
        thing_dataset_id_to_contiguous_id={1: 0},
        stuff_dataset_id_to_contiguous_id={1: 0, 5: 1},
        ignore_label=255,
        label_divisor=1000,
    )
    return name, ids, record


def test_detectron2_evaluators_accept_perfect_predictions(tmp_path):
    from detectron2.evaluation import COCOEvaluator, COCOPanopticEvaluator, SemSegEvaluator

    name, ids, record = _fabricate_dataset(str(tmp_path))
    # queries: the two things, the stuff split in two halves (merged), one void query
    ids_t = torch.from_numpy(ids)
    stuff = ids_t == 30
    left = stuff.clone()
    left[:, 4:] = False
    masks = torch.stack([ids_t == 10, ids_t == 20, left, stuff & ~left, torch.ones(8, 8).bool()])
    cls = _log_probs([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05],
                      [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]])
    mask_pred = _logits(masks)
    thing_ids = set(MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id.values())
    outputs = {
        "sem_seg": semantic_inference(cls, mask_pred),
        "panoptic_seg": panoptic_inference(cls, mask_pred, num_classes=2, thing_ids=thing_ids),
        "instances": instance_inference(cls, mask_pred, num_classes=2, thing_ids=thing_ids),
    }
    assert len(outputs["panoptic_seg"][1]) == 3
    inputs = [{"file_name": record["file_name"], "image_id": 1, "height": 8, "width": 8}]

    pan = COCOPanopticEvaluator(name, output_dir=str(tmp_path / "pq"))
    sem = SemSegEvaluator(name, distributed=False, output_dir=None)
    ins = COCOEvaluator(name, tasks=("segm",), distributed=False, output_dir=str(tmp_path / "ap"))
    results = {}
    for evaluator in (pan, sem, ins):
        evaluator.reset()
        evaluator.process(inputs, [outputs])
        results.update(evaluator.evaluate())
    assert results["panoptic_seg"]["PQ"] == pytest.approx(100.0)
    assert results["panoptic_seg"]["PQ_st"] == pytest.approx(100.0)
    assert results["sem_seg"]["mIoU"] == pytest.approx(100.0)
    assert results["segm"]["AP"] == pytest.approx(100.0)
