"""The image-level term (docs/distillation.md §10) and image_mAP (docs/region_evaluation.md §8)
through train_net.py on the tiny synthetic world (random toy CLIP)."""
import json
import math

CONFIG = "configs/Synthetic/clipself_toy_patches_global.py"


def test_global_config_logs_loss_global_and_reports_image_map(run_train_net, tmp_path):
    out = tmp_path / "global"
    log = run_train_net(
        CONFIG, "model.student.pretrained=null", "dataloader.train.total_batch_size=4",
        "dataloader.train.num_workers=0", "dataloader.test.num_workers=0", "optimizer.lr=1e-3",
        "lr_multiplier.warmup_length=0.1", "model.global_on_crops=true", "train.max_iter=6",
        "train.eval_period=6", "train.log_period=3", f'train.output_dir="{out}"',
    )
    rows = [json.loads(ln) for ln in open(out / "metrics.json")]
    global_losses = [r["loss_global"] for r in rows if "loss_global" in r]
    # student == teacher at iteration 0, then the term grows as the blocks move
    assert len(global_losses) == 2 and all(0.0 < x < 2.0 for x in global_losses), global_losses
    assert all("loss_clipself" in r for r in rows if "loss_global" in r)
    with open(out / "eval_results.json") as f:
        res = json.load(f)["results"]["region_recognition"]
    assert 0.0 < res["image_mAP"] <= 100.0 and res["num_images"] == 3
    assert math.isfinite(res["boxes_top1"]) and math.isfinite(res["crops_top1"])
    header = [ln.split("copypaste: ", 1)[1] for ln in log.splitlines()
              if "copypaste: boxes_top1" in ln]
    assert header and "image_mAP" in header[-1].split(",")  # dense and global on one line
