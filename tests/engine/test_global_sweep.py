"""The pure parts of the image-level term's sweep (clipself.engine.global_sweep)."""
import json
import math

import pytest
from detectron2.config import LazyConfig

from clipself.engine import global_sweep as gs
from clipself.engine.config import apply_overrides


def test_distill_and_alpha_args_are_valid_overrides_of_the_global_config():
    args = gs.distill_args("/ckpt/toy.pt", "/out/w", 0.1, iters=300, batch=16,
                           text_cache="/out/text")
    assert args[:2] == ["--config-file", gs.CONFIG]
    assert "model.global_loss_weight=0.1" in args and "train.max_iter=300" in args
    assert "lr_multiplier.warmup_length=0.06666666666666667" in args  # 20 of 300 iterations
    cfg = apply_overrides(LazyConfig.load(gs.CONFIG), args[2:])
    assert cfg.model.global_loss_weight == 0.1 and cfg.train.output_dir == "/out/w"
    assert cfg.dataloader.train.mapper.whole_image_size == cfg.dataloader.train.mapper.crop_size
    alpha = gs.alpha_args("/ckpt/toy.pt", "/out/w0/model_final.pth", "/out/a", 0.5, batch=4,
                          text_cache="/out/text", quick=True)
    assert alpha[0] == "--eval-only" and "model.alpha=0.5" in alpha
    cfg = apply_overrides(LazyConfig.load(gs.CONFIG), alpha[3:])
    assert cfg.train.init_checkpoint == "/out/w0/model_final.pth"
    assert cfg.dataloader.test.num_workers == 0


def test_sweep_rows_and_table(tmp_path):
    res = {"boxes_top1": 40.0, "thing_masks_top1": 30.0, "stuff_masks_top1": 20.0,
           "crops_top1": 60.0, "image_mAP": 70.0}
    rows = gs.sweep_rows({0.0: res, 0.5: dict(res, image_mAP=75.5)},
                         {0.7: {"boxes_top1": 35.0}})
    assert [(r["kind"], r["label"]) for r in rows] == [
        ("weight", "w=0"), ("weight", "w=0.5"), ("alpha", "alpha=0.7")]
    assert rows[1]["image_mAP"] == 75.5 and math.isnan(rows[2]["image_mAP"])  # missing -> NaN
    table = gs.write_table(str(tmp_path / "t.md"), rows)
    assert table.splitlines()[0].startswith("| setting | boxes_top1")
    assert "| w=0.5 | 40.0 | 30.0 | 20.0 | 60.0 | 75.5 |" in table
    assert (tmp_path / "t.md").read_text() == table


def test_alphas_need_the_weight_zero_run(tmp_path):
    with pytest.raises(ValueError, match="include 0 in weights"):
        gs.run_global_sweep(str(tmp_path), weights=(0.5,), alphas=(0.7,))


def test_last_losses_reads_total_loss_of_a_single_term_run(tmp_path):
    rows = [{"iteration": 1, "total_loss": 0.9}, {"iteration": 3, "total_loss": 0.5},
            {"iteration": 3, "region_recognition/boxes_top1": 10.0}]
    (tmp_path / "metrics.json").write_text("\n".join(json.dumps(r) for r in rows))
    single = gs.last_losses(str(tmp_path))
    assert single["loss_clipself"] == 0.5 and math.isnan(single["loss_global"])
    two = [{"total_loss": 0.6, "loss_clipself": 0.55, "loss_global": 0.05}]
    (tmp_path / "metrics.json").write_text(json.dumps(two[0]))
    assert gs.last_losses(str(tmp_path)) == {"loss_clipself": 0.55, "loss_global": 0.05}
    assert math.isnan(gs.last_losses(str(tmp_path / "none"))["loss_clipself"])
