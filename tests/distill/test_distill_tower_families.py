"""CLIPSelf distillation (patches and proposals) and the region-recognition evaluation through
train_net.py on shrunk towers of the new families: SigLIP2 (timm ViT, MAP head, no class token),
PE-Core (timm Eva, RoPE, class token + MAP head) and ModifiedResNet (CNN, attention pool), each
written as an open_clip JSON config; then the export of the distilled tower, loaded back."""
import json
import os

import pytest
import torch

from clipself.distill import export_distilled
from clipself.distill.ensemble import ensemble_state_dicts
from clipself.modeling import CLIPTower

TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}


def _timm(timm_name, pool, proj, **kwargs):
    timm_kwargs = dict({"img_size": 64, "patch_size": 8, "embed_dim": 64, "depth": 2,
                        "num_heads": 2}, **kwargs)
    return {"embed_dim": 64 if proj == "none" else 32, "text_cfg": TEXT,
            "vision_cfg": {"image_size": 64, "timm_model_name": timm_name, "timm_pool": pool,
                           "timm_proj": proj, "timm_model_kwargs": timm_kwargs}}


#: family -> (open_clip config of the shrunk tower, its dense grid at the 128 px student input)
TOWERS = {
    "siglip2": (_timm("vit_base_patch16_siglip_224", "map", "none"), 16),
    "pe_core": (_timm("vit_pe_core_base_patch16_224", "map", None, attn_pool_num_heads=2), 16),
    "modified_resnet": ({"embed_dim": 32, "text_cfg": TEXT, "vision_cfg": {
        "image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 8}}, 4),
}
CONFIGS = {"patches": "configs/Synthetic/clipself_toy_patches.py",
           "proposals": "configs/Synthetic/clipself_toy_proposals.py"}


def _opts(json_path, grid, out):
    return [
        "model.student.pretrained=null", f'model.student.model_name="{json_path}"',
        f"dataloader.test.mapper.mask_size={grid}",
        "dataloader.train.total_batch_size=4", "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0", "train.max_iter=3", "train.eval_period=3",
        "train.log_period=1", "model.alpha=0.5", f'train.output_dir="{out}"',
    ]


@pytest.mark.parametrize("source", sorted(CONFIGS))
@pytest.mark.parametrize("family", sorted(TOWERS))
def test_distill_and_evaluate_new_tower_family(family, source, run_train_net, tmp_path):
    cfg, grid = TOWERS[family]
    json_path = tmp_path / f"tiny-{family}.json"
    json_path.write_text(json.dumps(cfg))
    out = tmp_path / "run"
    log = run_train_net(CONFIGS[source], *_opts(json_path, grid, out))

    losses = [json.loads(ln).get("total_loss") for ln in open(out / "metrics.json")]
    losses = [x for x in losses if x is not None]
    assert len(losses) == 3 and all(0.0 < x < 2.0 for x in losses), losses
    with open(out / "eval_results.json") as f:
        res = json.load(f)["results"]["region_recognition"]
    assert res["num_thing_regions"] > 0 and res["num_stuff_regions"] > 0
    for key in ("boxes_top1", "thing_masks_top1", "stuff_masks_top1", "crops_top1"):
        assert 0.0 <= res[key] <= 100.0
    assert "copypaste: Task: region_recognition" in log

    saved = torch.load(out / "model_final.pth", weights_only=False)["model"]
    student = {k[len("student."):]: v for k, v in saved.items() if k.startswith("student.")}
    teacher = {k[len("teacher."):]: v for k, v in saved.items() if k.startswith("teacher.")}
    moved = [k for k in student if not torch.equal(student[k], teacher[k])]
    assert moved, "the student did not train"

    # the alpha = 0.5 export in open_clip's layout loads back into the same tower family
    exported = str(tmp_path / "exported.pt")
    ckpt = export_distilled(str(out / "model_final.pth"), exported, model_name=str(json_path),
                            alpha=0.5)
    assert not any(".attn.q_bias" in k for k in ckpt["state_dict"])  # not the EVA-CLIP layout
    tower = CLIPTower(str(json_path), pretrained=exported)
    assert tower.load_report.ok
    expected = ensemble_state_dicts(student, teacher, 0.5)
    got = tower.state_dict()
    assert all(torch.equal(got[k], expected[k].to(got[k].dtype)) for k in expected)
    x = torch.randn(1, 3, 128, 96)
    assert tuple(tower.dense_features(x).shape[-2:]) == (128 * grid // 128, 96 * grid // 128)


def test_cnn_tower_under_a_vit_mask_size_names_the_key(train_net_process, tmp_path):
    cfg, _ = TOWERS["modified_resnet"]
    json_path = tmp_path / "tiny-rn.json"
    json_path.write_text(json.dumps(cfg))
    opts = [o for o in _opts(json_path, 4, tmp_path / "run") if "mask_size" not in o]
    proc = train_net_process(CONFIGS["patches"], *opts)  # the ViT config's mask_size = 16
    assert proc.returncode != 0
    assert "set dataloader.test.mapper.mask_size=4" in proc.stderr
    assert os.path.isfile(tmp_path / "run" / "model_final.pth")  # training itself finished
