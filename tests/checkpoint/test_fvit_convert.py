"""F-ViT mmdet -> Detectron2 conversion on fabricated checkpoints in the authors' key layout.

Shape shorthand: C tower width (64), F FPN/head channels (16), D CLIP embedding dim (32),
K classes (5).
"""
import io
import json
import os
import runpy
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

from clipself.checkpoint import (
    FVIT_CLIP_PREFIX,
    convert_fvit_state_dict,
    fvit_key_groups,
    infer_fvit_model_name,
    is_fvit_mmdet_state_dict,
    visual_to_clipself_state_dict,
)
from clipself.modeling import CLIPViT

DEPTH = 4  # F-ViT taps 4 blocks
TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
EVA = {"name": "tiny-eva", "embed_dim": 32, "text_cfg": TEXT, "vision_cfg": {
    "image_size": 32, "timm_model_name": "eva02_base_patch16_clip_224", "timm_pool": "token",
    "timm_proj": None,
    "timm_model_kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": DEPTH,
                          "num_heads": 2}}}
C, F, D, K = 64, 16, 32, 5
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@torch.no_grad()
def _tower(seed=0):
    torch.manual_seed(seed)
    m = CLIPViT(EVA).eval()
    g = torch.Generator().manual_seed(seed)
    for p in m.parameters():
        p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return m


class _Fab:
    """An mmdet state dict in the authors' layout plus the hand-written target of each key."""

    def __init__(self, seed=0):
        self.g = torch.Generator().manual_seed(seed)
        self.sd, self.expected = {}, {}  # source key -> tensor; target key -> source key

    def put(self, src, tgt, *shape):
        self.sd[src] = torch.randn(*shape, generator=self.g)
        if tgt is not None:
            self.expected[tgt] = src

    def conv_bn(self, src, tgt, *shape):
        """mmdet ConvModule with BN (no conv bias) -> d2 Conv2d with ``.norm``."""
        self.put(f"{src}.conv.weight", f"{tgt}.weight", *shape)
        for n in BN[:4]:
            self.put(f"{src}.bn.{n}", f"{tgt}.norm.{n}", shape[0])
        self.sd[f"{src}.bn.running_var"].abs_().add_(0.5)
        self.sd[f"{src}.bn.num_batches_tracked"] = torch.tensor(len(self.sd))
        self.expected[f"{tgt}.norm.num_batches_tracked"] = f"{src}.bn.num_batches_tracked"


def _fvit_mmdet(lvis=False, seed=0, temperature_shape=(1,)):
    """(mmdet state dict, {target: source}, the tower whose weights it holds)."""
    tower = _tower(seed)
    fab = _Fab(seed)
    visual = visual_to_clipself_state_dict(tower.visual)  # the authors' EVA-CLIP layout
    fab.sd.update({"backbone." + k: v for k, v in visual.items()})
    # backbone adapters
    bb = "backbone.bottom_up."
    for m in ("interpolate1.0", "interpolate1.3", "interpolate2.0"):
        fab.put(f"backbone.{m}.weight", f"{bb}{m}.weight", C, C, 2, 2)
        fab.put(f"backbone.{m}.bias", f"{bb}{m}.bias", C)
    for n in BN[:4]:
        fab.put(f"backbone.interpolate1.1.{n}", f"{bb}interpolate1.1.{n}", C)
    fab.sd["backbone.interpolate1.1.num_batches_tracked"] = torch.tensor(7)
    fab.expected[f"{bb}interpolate1.1.num_batches_tracked"] = (
        "backbone.interpolate1.1.num_batches_tracked")
    # neck
    for i in range(4):
        fab.conv_bn(f"neck.lateral_convs.{i}", f"backbone.fpn_lateral{i + 2}", F, C, 1, 1)
        fab.conv_bn(f"neck.fpn_convs.{i}", f"backbone.fpn_output{i + 2}", F, F, 3, 3)
    # RPN
    rpn = "proposal_generator.rpn_head."
    for i in range(2):
        if lvis:
            fab.conv_bn(f"rpn_head.rpn_conv.{i}", f"{rpn}conv.conv{i}", F, F, 3, 3)
        else:
            fab.put(f"rpn_head.rpn_conv.{i}.conv.weight", f"{rpn}conv.conv{i}.weight", F, F, 3, 3)
            fab.put(f"rpn_head.rpn_conv.{i}.conv.bias", f"{rpn}conv.conv{i}.bias", F)
    fab.put("rpn_head.rpn_cls.weight", f"{rpn}objectness_logits.weight", 3, F, 1, 1)
    fab.put("rpn_head.rpn_cls.bias", f"{rpn}objectness_logits.bias", 3)
    fab.put("rpn_head.rpn_reg.weight", f"{rpn}anchor_deltas.weight", 12, F, 1, 1)
    fab.put("rpn_head.rpn_reg.bias", f"{rpn}anchor_deltas.bias", 12)
    # box head and predictor
    bh = "roi_head.bbox_head."
    for i in range(4):
        fab.conv_bn(f"{bh}shared_convs.{i}", f"roi_heads.box_head.conv{i + 1}", F, F, 3, 3)
    fab.put(f"{bh}shared_fcs.0.weight", "roi_heads.box_head.fc1.weight", D, F * 49)
    fab.put(f"{bh}shared_fcs.0.bias", "roi_heads.box_head.fc1.bias", D)
    fab.put(f"{bh}shared_fcs.1.weight", "roi_heads.box_head.fc2.weight", D, D)
    fab.put(f"{bh}shared_fcs.1.bias", "roi_heads.box_head.fc2.bias", D)
    pred = "roi_heads.box_predictor."
    for src, tgt, rows in (("cls_fcs.0", "cls_fc", D), ("reg_fcs.0", "reg_fc", D),
                           ("fc_reg", "bbox_pred", 4)):
        fab.put(f"{bh}{src}.weight", f"{pred}{tgt}.weight", rows, D)
        fab.put(f"{bh}{src}.bias", f"{pred}{tgt}.bias", rows)
    fab.sd[f"{bh}detect_temperature"] = torch.full(temperature_shape, 50.0)
    fab.put(f"{bh}fc_cls.weight", None, K + 1, D)  # unused in F-ViT: dropped
    fab.put(f"{bh}fc_cls.bias", None, K + 1)
    fab.put(f"{bh}all_embeddings", None, D, K + 1)  # side output
    if lvis:
        mh = "roi_head.mask_head."
        for i in range(4):
            fab.conv_bn(f"{mh}convs.{i}", f"roi_heads.mask_head.mask_fcn{i + 1}", F, F, 3, 3)
        fab.put(f"{mh}upsample.weight", "roi_heads.mask_head.deconv.weight", F, F, 2, 2)
        fab.put(f"{mh}upsample.bias", "roi_heads.mask_head.deconv.bias", F)
        fab.put(f"{mh}conv_logits.weight", "roi_heads.mask_head.predictor.weight", 1, F, 1, 1)
        fab.put(f"{mh}conv_logits.bias", "roi_heads.mask_head.predictor.bias", 1)
    return fab.sd, fab.expected, tower


def _same_outputs(a, b):
    x = torch.randn(2, 3, 40, 24)
    with torch.no_grad():
        assert torch.equal(a.dense_features(x), b.dense_features(x))
        assert torch.equal(a.encode_image(x), b.encode_image(x))


def _check_mapping(out, sd, expected):
    clip_keys = {FVIT_CLIP_PREFIX + k for k in CLIPViT(EVA).state_dict()}
    assert set(out) == clip_keys | set(expected) | {"roi_heads.box_predictor.temperature"}
    for tgt, src in expected.items():
        assert out[tgt].shape == sd[src].shape, tgt
        assert out[tgt].dtype == sd[src].dtype, tgt
        assert torch.equal(out[tgt], sd[src]), tgt


# ---------------------------------------------------------------- the two released variants
def test_coco_variant():
    sd, expected, _ = _fvit_mmdet(lvis=False)
    out, rep = convert_fvit_state_dict(sd, CLIPViT(EVA))
    _check_mapping(out, sd, expected)
    assert torch.equal(out["backbone.fpn_lateral3.norm.running_mean"],
                       sd["neck.lateral_convs.1.bn.running_mean"])
    assert torch.equal(out["proposal_generator.rpn_head.conv.conv1.bias"],
                       sd["rpn_head.rpn_conv.1.conv.bias"])
    assert torch.equal(out["roi_heads.box_predictor.bbox_pred.weight"],
                       sd["roi_head.bbox_head.fc_reg.weight"])
    assert rep.ok and not rep.unknown and not rep.missing
    assert rep.model_name == "tiny-eva" and not rep.model_name_inferred
    assert not rep.has_mask_head and not rep.rpn_norm
    assert rep.mapped == {"clip": len(CLIPViT(EVA).state_dict()), "adapters": 11, "fpn": 48,
                          "rpn": 8, "box_head": 28, "box_predictor": 7}
    rope = {k for k in sd if ".rope." in k}
    assert len(rope) == 2 + 2 * DEPTH  # shared table + one per block
    dropped = {"roi_head.bbox_head.fc_cls.weight", "roi_head.bbox_head.fc_cls.bias",
               "roi_head.bbox_head.all_embeddings"} | rope
    assert set(rep.dropped) == dropped
    assert torch.equal(rep.embeddings, sd["roi_head.bbox_head.all_embeddings"])
    assert rep.visual.ok and rep.visual.layout == "eva_clip"
    # every non-visual source key is mapped or dropped
    non_visual = [k for k in sd if not k.startswith("backbone.visual.")]
    assert len(non_visual) == sum(rep.mapped.values()) - rep.mapped["clip"] + 3


def test_lvis_variant():
    sd, expected, _ = _fvit_mmdet(lvis=True, seed=1)
    assert "rpn_head.rpn_conv.0.conv.bias" not in sd
    out, rep = convert_fvit_state_dict(sd, CLIPViT(EVA))
    _check_mapping(out, sd, expected)
    assert torch.equal(out["proposal_generator.rpn_head.conv.conv0.norm.running_var"],
                       sd["rpn_head.rpn_conv.0.bn.running_var"])
    assert torch.equal(out["roi_heads.mask_head.mask_fcn4.norm.num_batches_tracked"],
                       sd["roi_head.mask_head.convs.3.bn.num_batches_tracked"])
    assert torch.equal(out["roi_heads.mask_head.deconv.weight"],
                       sd["roi_head.mask_head.upsample.weight"])
    assert rep.ok and not rep.unknown
    assert rep.has_mask_head and rep.rpn_norm
    assert rep.mapped["rpn"] == 2 * 6 + 4 and rep.mapped["mask_head"] == 4 * 6 + 4


def test_visual_round_trip():
    sd, _, tower = _fvit_mmdet()
    out, _ = convert_fvit_state_dict(sd, CLIPViT(EVA))
    n = len(FVIT_CLIP_PREFIX)
    converted = CLIPViT(EVA).eval()
    converted.load_state_dict({k[n:]: v for k, v in out.items() if k.startswith(FVIT_CLIP_PREFIX)})
    direct = CLIPViT(EVA, pretrained={k[len("backbone."):]: v for k, v in sd.items()
                                      if k.startswith("backbone.visual.")}).eval()
    assert direct.load_report.ok
    _same_outputs(converted, direct)
    _same_outputs(converted, tower)


# ---------------------------------------------------------------- edge cases
def test_unknown_and_missing_keys():
    sd, _, _ = _fvit_mmdet()
    extra = {
        "roi_head.bbox_head.bg_embedding": torch.zeros(D),
        "roi_head.bbox_head.cls_fcs.1.weight": torch.zeros(D, D),
        "backbone.interpolate3.0.weight": torch.zeros(1),
        "backbone.visual.blocks.0.attn.extra": torch.zeros(3),
    }
    sd.update(extra)
    del sd["roi_head.bbox_head.fc_reg.bias"]
    del sd["neck.fpn_convs.2.bn.running_var"]
    out, rep = convert_fvit_state_dict(sd, CLIPViT(EVA))
    assert sorted(rep.unknown) == sorted(extra)
    assert sorted(rep.missing) == ["backbone.fpn_output4.norm.running_var",
                                   "roi_heads.box_predictor.bbox_pred.bias"]
    assert not rep.ok
    assert not any(k.startswith(("roi_head.", "backbone.interpolate3")) for k in out)
    text = str(rep)
    assert "unknown keys, not converted (4)" in text and "missing keys (2)" in text
    assert "backbone.visual.blocks.0.attn.extra" in text
    # a missing visual weight is a missing target key of the tower
    del sd["backbone.visual.blocks.1.mlp.w3.weight"]
    _, rep = convert_fvit_state_dict(sd, CLIPViT(EVA))
    assert FVIT_CLIP_PREFIX + "visual.trunk.blocks.1.mlp.fc2.weight" in rep.missing


@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
def test_temperature_shapes(shape):
    sd, _, _ = _fvit_mmdet(temperature_shape=shape)
    sd["roi_head.bbox_head.detect_temperature"] = sd[
        "roi_head.bbox_head.detect_temperature"].double() * 0.9
    out, rep = convert_fvit_state_dict(sd, CLIPViT(EVA))
    t = out["roi_heads.box_predictor.temperature"]
    assert t.shape == () and t.dtype == torch.float32 and t.item() == pytest.approx(45.0)
    assert any("detect_temperature" in n for n in rep.notes) == (len(shape) > 0)


def test_temperature_with_several_values_fails():
    sd, _, _ = _fvit_mmdet(temperature_shape=(2,))
    with pytest.raises(ValueError, match="detect_temperature"):
        convert_fvit_state_dict(sd, CLIPViT(EVA))


def test_single_rpn_conv_and_groups():
    sd, _, _ = _fvit_mmdet()
    for n in ("weight", "bias"):
        sd[f"rpn_head.rpn_conv.{n}"] = sd.pop(f"rpn_head.rpn_conv.0.conv.{n}")
        del sd[f"rpn_head.rpn_conv.1.conv.{n}"]
    out, rep = convert_fvit_state_dict(sd, CLIPViT(EVA))
    assert torch.equal(out["proposal_generator.rpn_head.conv.weight"],
                       sd["rpn_head.rpn_conv.weight"])
    assert rep.ok and rep.mapped["rpn"] == 6
    groups = fvit_key_groups(sd)
    assert groups["rpn"] == 6 and groups["dropped"] == 3 and "unknown" not in groups
    assert groups["clip"] == sum(k.startswith("backbone.visual.") for k in sd)


def test_model_name_inference_and_errors():
    for width, name in ((768, "EVA02-B-16"), (1024, "EVA02-L-14-336")):
        fake = {"backbone.visual.patch_embed.proj.weight": torch.empty(width, 3, 1, 1)}
        assert infer_fvit_model_name(fake) == name
    sd, _, _ = _fvit_mmdet()
    assert is_fvit_mmdet_state_dict(sd)
    with pytest.raises(ValueError, match="visual width 64"):
        infer_fvit_model_name(sd)
    with pytest.raises(ValueError, match="not an F-ViT"):
        convert_fvit_state_dict({k: v for k, v in sd.items() if k.startswith("backbone.")},
                                CLIPViT(EVA))
    # the whole checkpoint dict is accepted too
    _, rep = convert_fvit_state_dict({"meta": {}, "state_dict": sd}, CLIPViT(EVA))
    assert rep.ok


# ---------------------------------------------------------------- the command-line tool
def _holder(sd):
    """A module whose state dict has exactly these keys (zeros), for DetectionCheckpointer."""
    root = nn.Module()
    for k, v in sd.items():
        *path, leaf = k.split(".")
        mod = root
        for p in path:
            if p not in mod._modules:
                mod.add_module(p, nn.Module())
            mod = mod._modules[p]
        mod.register_buffer(leaf, torch.zeros_like(v))
    return root


def test_cli_end_to_end(tmp_path):
    sd, expected, _ = _fvit_mmdet(lvis=True)
    cfg_path = tmp_path / "tiny_eva.json"
    cfg_path.write_text(json.dumps({k: v for k, v in EVA.items() if k != "name"}))
    src = str(tmp_path / "fvit_mmdet.pth")
    meta = {"epoch": 48, "CLASSES": ("a", "b"), "config": "model = dict()",
            "hook_msgs": {"best_score": np.float64(0.25)}}  # mmcv may store numpy scalars
    torch.save({"meta": meta, "state_dict": sd, "optimizer": {"state": {}, "param_groups": []}},
               src)
    dst, emb = str(tmp_path / "out" / "fvit_d2.pth"), str(tmp_path / "emb.pt")
    tool = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "convert_checkpoint.py")
    main = runpy.run_path(tool)["main"]
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["fvit-from-mmdet", "--input", src, "--output", dst, "--model", str(cfg_path),
                     "--save-embeddings", emb]) == 0
    assert "mask head: True" in buf.getvalue() and "wrote " + dst in buf.getvalue()

    ckpt = torch.load(dst, weights_only=True)
    assert set(ckpt) == {"model", "__author__", "matching_heuristics"}
    assert ckpt["matching_heuristics"] is False
    out = ckpt["model"]
    assert torch.equal(torch.load(emb, weights_only=True), sd["roi_head.bbox_head.all_embeddings"])
    model = _holder(out)
    DetectionCheckpointer(model).load(dst)
    loaded = model.state_dict()
    assert loaded.keys() == out.keys() and all(torch.equal(loaded[k], out[k]) for k in out)
    for tgt, s in expected.items():
        assert torch.equal(loaded[tgt], sd[s]), tgt

    for path, fmt in ((src, "F-ViT mmdet detector"), (dst, "F-ViT Detectron2")):
        buf = io.StringIO()
        with redirect_stdout(buf):
            assert main(["inspect", "--input", path]) == 0
        info = json.loads(buf.getvalue()[buf.getvalue().index("{"):])
        assert info["format"] == fmt
    assert info["visual_layout"] == "open_clip_timm"
    buf = io.StringIO()
    with redirect_stdout(buf):
        main(["inspect", "--input", src])
    info = json.loads(buf.getvalue()[buf.getvalue().index("{"):])
    assert info["visual_layout"] == "eva_clip" and info["fvit_mask_head"]
    assert info["fvit_model"] is None  # width 64: not a released model
    assert info["fvit_groups"] == {"clip": sum(k.startswith("backbone.visual.") for k in sd),
                                   "adapters": 11, "fpn": 48, "rpn": 16, "box_head": 28,
                                   "box_predictor": 7, "mask_head": 28, "dropped": 3}

    # missing keys: error (exit 1) unless --no-strict; no embeddings to save: error
    del sd["rpn_head.rpn_cls.bias"]
    del sd["roi_head.bbox_head.all_embeddings"]
    torch.save({"state_dict": sd}, src)
    args = ["fvit-from-mmdet", "--input", src, "--output", dst, "--model", str(cfg_path)]
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as err:
        assert main(args) == 1
        assert "objectness_logits.bias" in err.getvalue()
        assert main(args + ["--no-strict", "--save-embeddings", emb]) == 1
        assert "all_embeddings" in err.getvalue()
        assert main(args + ["--no-strict"]) == 0
    assert "proposal_generator.rpn_head.objectness_logits.bias" not in torch.load(
        dst, weights_only=True)["model"]


@pytest.mark.parametrize("lvis", [False, True])
def test_converted_state_dict_loads_into_the_fvit_model(lvis):
    """The converted keys are exactly those of an F-ViT built from the shipped model config."""
    import importlib.util

    from detectron2.config import LazyConfig, instantiate

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "configs", "common", "models", "fvit.py")
    spec = importlib.util.spec_from_file_location("fvit_model_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = LazyConfig.load(path).model
    module.set_clip_tower(cfg, model_name=EVA, pretrained=None, out_indices=[0, 1, 2, 3],
                          patch=8, embed_dim=D, image_size=64, text_pretrained=None)
    cfg.backbone.bottom_up.norm = cfg.backbone.norm = "BN"
    cfg.backbone.out_channels = F
    cfg.proposal_generator.head.in_channels = F
    cfg.proposal_generator.head.conv_dims = [F, F]
    cfg.proposal_generator.head.norm = "BN" if lvis else ""
    heads = cfg.roi_heads
    heads.box_head.input_shape.channels = F
    heads.box_head.conv_dims = [F] * 4
    heads.box_head.conv_norm = "BN"
    heads.num_classes = K
    voc = heads.box_predictor.vocabulary
    voc.dataset_name = voc.text_encoder = None
    voc.class_names = [f"c{i}" for i in range(K)]
    voc.embeddings = torch.randn(K + 1, D)
    if lvis:
        from detectron2.layers import ShapeSpec
        from detectron2.modeling.roi_heads import MaskRCNNConvUpsampleHead

        from clipself.modeling.fvit import FloatStrideROIPooler

        heads.mask_in_features = ["p2", "p3", "p4", "p5"]
        heads.mask_pooler = FloatStrideROIPooler(output_size=14, strides=[2, 4, 8, 16])
        heads.mask_head = MaskRCNNConvUpsampleHead(
            input_shape=ShapeSpec(channels=F, width=14, height=14), num_classes=1,
            conv_dims=[F] * 5, conv_norm="BN")
    model = instantiate(cfg)
    sd, _, _ = _fvit_mmdet(lvis=lvis)
    out, rep = convert_fvit_state_dict(sd, CLIPViT(EVA))
    assert rep.ok
    result = model.load_state_dict(out, strict=False)
    assert not result.missing_keys and not result.unexpected_keys, result
    assert model.roi_heads.box_predictor.temperature.item() == 50.0
