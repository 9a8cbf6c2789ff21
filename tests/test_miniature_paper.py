"""The miniature paper, shortened (tiny world, a few iterations): every stage runs end to end.

This is the CI integration test of `make demo`; it checks the pipeline, not the accuracy of the
full run.
"""
import importlib.util
import json
import math
import os
import runpy
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, *args):
    argv = sys.argv
    sys.argv = [script, *args]
    try:
        runpy.run_path(os.path.join(ROOT, "tools", script), run_name="__main__")
    finally:
        sys.argv = argv


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper") / "demo"
    _run("miniature_paper.py", "--output", str(out), "--quick")
    return out


def test_quick_miniature_paper(quick_demo):
    out = quick_demo
    for name in ("REPORT.md", "metrics.json", "kmeans.png", "toy_clip/toy_clip.pt",
                 "clipself/model_final.pth", "clipself/toy_clipself.pt"):
        assert (out / name).exists(), name
    m = json.loads((out / "metrics.json").read_text())
    assert 0 <= m["toy_clip"]["zero_shot_top1"] <= 100
    assert m["region_recognition"]["after_source"] == "proposals"
    # the teacher's view of each distillation mode's regions (docs/miniature.md §3)
    for row in ("object_crops", "tight_boxes", "grid", "grid_things", "grid_stuff"):
        assert m["teacher_regions"][row]["regions"] >= 0, row
    assert m["teacher_regions"]["grid"]["regions"] > 0
    for when in ("before", "after", "after_patches", "after_mixed"):
        res = m["region_recognition"][when]
        for key in ("boxes_top1", "boxes_top5", "thing_masks_top1", "stuff_masks_top1",
                    "crops_top1"):
            assert math.isfinite(res[key]) and 0 <= res[key] <= 100, (when, key)
        assert res["boxes_top1"] <= res["boxes_top5"]
    assert m["clipself"]["loss_last"] < m["clipself"]["loss_first"]
    assert m["clipself_proposals"]["loss_last"] < m["clipself_proposals"]["loss_first"]
    for backbone in ("original", "clipself"):
        det = m["detection"][backbone]
        for key in ("ap50_novel", "ap50_base"):
            assert math.isfinite(det[key]) and 0 <= det[key] <= 100, (backbone, key)
        assert os.path.isfile(det["checkpoint"])
    # the toy F-ViT trains under bf16 autocast where the CPU has it natively; the logs say so
    assert m["fvit_precision"] in ("bf16", "fp32")
    fvit_log = (out / "fvit" / "clipself.log").read_text()
    assert ("AMP (bfloat16)" in fvit_log) == (m["fvit_precision"] == "bf16")
    stages = {"world", "toy_clip", "before", "clipself", "proposals", "mixed", "alpha",
              "pictures", "fvit", "total"}
    assert set(m["region_recognition"]["alpha"]) == {  # --quick: one alpha (make demo: 0.7, 0.5)
        "patches_alpha0.5", "proposals_alpha0.5"}
    assert set(m["seconds"]) >= stages
    report = (out / "REPORT.md").read_text()
    assert "Dense features, toy CLIP + CLIPSelf" in report
    assert "| tight object boxes (x1, the dense box RoI; 35 classes) |" in report
    assert "| toy CLIP + CLIPSelf (proposals) |" in report  # the detection table


@pytest.mark.slow  # about 2 minutes; each head's train_net path is in the default suite
def test_quick_segmentation_paper(quick_demo, tmp_path):
    """`make demo-seg` shortened: panoptic (3 class-score modes) and semantic heads on each tower
    of the quick demo, pictures, report."""
    out = tmp_path / "seg"
    _run("segmentation_paper.py", "--output", str(out), "--demo", str(quick_demo), "--quick")
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["panoptic"]) == set(m["semantic"]) == {"original", "clipself", "clipself_mixed"}
    for tower, res in m["panoptic"].items():
        assert os.path.isfile(res["checkpoint"])
        for mode in ("pred", "clip", "ensemble"):
            for key in ("pq", "pq_th", "pq_st", "miou", "mask_ap"):
                assert math.isfinite(res[mode][key]) and 0 <= res[mode][key] <= 100
    for tower, res in m["semantic"].items():
        assert 0 <= res["miou"] <= 100 and os.path.isfile(res["checkpoint"])
    for name in ("REPORT.md", "panoptic.png", "semantic.png"):
        assert (out / name).exists(), name
    assert {"towers", "panoptic", "semantic", "pictures", "total"} <= set(m["seconds"])
    report = (out / "REPORT.md").read_text()
    assert "| toy CLIP + CLIPSelf (patches) | CLIP only |" in report
    assert "## Open-vocabulary semantic segmentation" in report


def test_per_class_iou_from_results():
    spec = importlib.util.spec_from_file_location(
        "segmentation_paper", os.path.join(ROOT, "tools", "segmentation_paper.py"))
    sp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sp)
    from clipself.synthetic import NOVEL_CLASSES

    sem_seg = {"mIoU": 30.0, f"IoU-{NOVEL_CLASSES[0]}": 10.0,
               f"IoU-{NOVEL_CLASSES[1]}": float("nan"), "IoU-grass": 50.0,
               "BoundaryIoU-grass": 1.0, "ACC-grass": 60.0}
    ious = sp.per_class_iou(sem_seg)
    assert ious[NOVEL_CLASSES[0]] == 10.0 and math.isnan(ious[NOVEL_CLASSES[1]])
    assert set(ious) == {NOVEL_CLASSES[0], NOVEL_CLASSES[1], "grass"}
    assert sp.split_miou(ious) == {"miou_unseen": 10.0, "miou_seen": 50.0}


def test_fvit_precision_choice(monkeypatch):
    from tests.helpers import load_file

    mp = load_file(os.path.join(ROOT, "tools", "miniature_paper.py"), "miniature_paper_p")
    assert mp.fvit_precision("fp32") == "fp32" and mp.fvit_precision("bf16") == "bf16"
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(mp.torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
        assert mp.fvit_precision("auto") == expected
    with pytest.raises(ValueError, match="precision must be"):
        mp.stage_fvit("unused", {}, {}, "unused", mp.SIZES["quick"], True, precision="fp16")


def test_analyze_regions_on_quick_demo(quick_demo):
    """tools/analyze_regions.py on the quick demo's proposals student: colour / shape split."""
    out = quick_demo / "analysis.json"
    env = dict(os.environ, DETECTRON2_DATASETS=str(quick_demo / "datasets"))
    subprocess.run([
        sys.executable, os.path.join(ROOT, "tools", "analyze_regions.py"),
        "--config-file", os.path.join(ROOT, "configs/Synthetic/clipself_toy_proposals.py"),
        "--checkpoint", str(quick_demo / "clipself_proposals" / "model_final.pth"),
        "--output", str(out), f'model.student.pretrained="{quick_demo}/toy_clip/toy_clip.pt"',
        f'dataloader.evaluator.vocabulary.text_encoder.cache_dir="{quick_demo}/text_embeddings"',
        "dataloader.test.num_workers=0",
    ], env=env, cwd=ROOT, check=True)
    res = json.loads(out.read_text())
    assert set(res) == {"boxes", "masks", "crops"}
    counts = {sum(map(sum, r["shape_confusion"])) for r in res.values()}
    assert len(counts) == 1 and counts.pop() > 0  # every thing region, once per kind
    for r in res.values():
        for key in ("top1", "colour", "shape"):
            assert 0 <= r[key] <= 100
        assert r["top1"] <= min(r["colour"], r["shape"])


def test_report_without_the_optional_stages(quick_demo, tmp_path):
    """--skip mixed,alpha,pictures (make demo-seeds): the report leaves out their rows and
    sections instead of failing; an unknown stage is refused by name."""
    from tests.helpers import load_file

    mp = load_file(os.path.join(ROOT, "tools", "miniature_paper.py"), "miniature_paper_skip")
    m = json.loads((quick_demo / "metrics.json").read_text())
    for key in ("clipself_mixed", "pictures"):
        m.pop(key)
    m["region_recognition"].pop("after_mixed")
    m["region_recognition"].pop("alpha")
    for stage in ("mixed", "alpha", "pictures"):
        m["seconds"].pop(stage)
    mp.write_report(str(tmp_path), m)
    report = (tmp_path / "REPORT.md").read_text()
    assert "(patches)" in report and "| toy CLIP + CLIPSelf (proposals) |" in report
    for absent in ("mixed", "Weight ensembling", "kmeans.png"):
        assert absent not in report, absent
    with pytest.raises(SystemExit):
        mp.main(["--output", str(tmp_path / "x"), "--skip", "fvit"])


@pytest.mark.slow
def test_quick_demo_seeds(quick_demo, tmp_path):
    """`make demo-seeds` shortened: seed 0 is the quick demo's own run (reused), seed 1 runs
    without the optional stages; mean and spread over both, targets per seed, picture."""
    out = tmp_path / "seeds"
    _run("demo_seeds.py", "--output", str(out), "--seeds", "0,1", "--quick",
         "--demo", str(quick_demo))
    m = json.loads((out / "metrics.json").read_text())
    assert m["reports"]["0"] == os.path.join(str(quick_demo), "REPORT.md")
    seed1 = json.loads((out / "seed_1" / "metrics.json").read_text())
    assert seed1["world"]["seed"] == 1 and "after_mixed" not in seed1["region_recognition"]
    assert set(seed1["seconds"]) >= {"world", "toy_clip", "before", "clipself", "proposals",
                                     "fvit"} and "alpha" not in seed1["seconds"]
    fig = m["summary"]["figures"]["boxes_patches"]
    values = list(fig["values"].values())
    assert len(values) == 2 and fig["spread"]["mean"] == pytest.approx(sum(values) / 2)
    assert set(m["summary"]["targets"]) == {"toy_clip_top1", "patches_of_crops",
                                            "proposals_of_crops", "stuff_patches",
                                            "fvit_novel_gain"}
    report = (out / "REPORT.md").read_text()
    assert "| figure | seed 0 | seed 1 | mean +- std | min - max |" in report
    assert (out / "seeds.png").stat().st_size > 0
    # a second run reuses the finished seed 1 (an interrupted run resumes where it stopped)
    _run("demo_seeds.py", "--output", str(out), "--seeds", "0,1", "--quick",
         "--demo", str(quick_demo))
    again = json.loads((out / "metrics.json").read_text())
    assert again["summary"] == m["summary"] and again["seconds"]["1"] < 5


def test_demo_seeds_reuses_only_finished_runs_of_the_same_world(tmp_path):
    from tests.helpers import load_file

    ds = load_file(os.path.join(ROOT, "tools", "demo_seeds.py"), "demo_seeds_p")
    sizes = ds.SIZES["quick"]
    finished = {"world": {"seed": 3}, "quick": True, "sizes": dict(sizes), "detection": {},
                "region_recognition": {"after_patches": {}},
                "seconds": {"world": 9.0, "before": 1.0, "clipself": 2.0, "fvit": 4.0}}
    (tmp_path / "metrics.json").write_text(json.dumps(finished))
    assert ds.reusable_run(str(tmp_path), 3, True, sizes) == finished
    assert ds.stage_seconds(finished) == 7.0  # the world is cached per seed: not counted
    assert ds.reusable_run(str(tmp_path), 4, True, sizes) is None  # another world
    assert ds.reusable_run(str(tmp_path), 3, False, sizes) is None  # other sizes
    assert ds.reusable_run(str(tmp_path / "missing"), 3, True, sizes) is None
    del finished["detection"]  # stopped before F-ViT
    (tmp_path / "metrics.json").write_text(json.dumps(finished))
    assert ds.reusable_run(str(tmp_path), 3, True, sizes) is None
