"""F-ViT model: frozen tower, pyramid with fractional strides, train/eval forward, checks."""
import copy
import importlib.util
import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from clipself.modeling.fvit import FViT
from clipself.structures import Vocabulary, build_vocabulary

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MODEL_CONFIG = os.path.join(ROOT, "configs/common/models/fvit.py")
TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}


def _tiny_vit(patch):
    return {"name": f"tiny-vit-p{patch}", "embed_dim": 32, "text_cfg": TEXT, "vision_cfg": {
        "image_size": 4 * patch, "patch_size": patch, "width": 48, "layers": 4, "head_width": 24}}


def _cfg(patch=14, image_size=112, num_classes=5):
    spec = importlib.util.spec_from_file_location("fvit_model_config", MODEL_CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # for set_clip_tower; LazyConfig.load drops functions
    model = LazyConfig.load(MODEL_CONFIG).model
    module.set_clip_tower(
        model, model_name=_tiny_vit(patch), pretrained=None, out_indices=[0, 1, 2, 3],
        patch=patch, embed_dim=32, image_size=image_size, text_pretrained=None,
    )
    model.backbone.bottom_up.norm = "BN"
    model.backbone.norm = "BN"
    model.backbone.out_channels = 16
    model.proposal_generator.head.in_channels = 16
    model.proposal_generator.head.conv_dims = [16, 16]
    model.roi_heads.box_head.input_shape.channels = 16
    model.roi_heads.box_head.conv_dims = [16] * 4
    model.roi_heads.box_head.conv_norm = "BN"
    model.roi_heads.num_classes = num_classes
    model.roi_heads.batch_size_per_image = 32
    voc = model.roi_heads.box_predictor.vocabulary
    voc.dataset_name = None
    voc.text_encoder = None
    voc.class_names = [f"c{i}" for i in range(num_classes)]
    voc.seen_classes = [f"c{i}" for i in range(num_classes - 1)]
    voc.embeddings = torch.randn(num_classes + 1, 32, generator=torch.Generator().manual_seed(0))
    return model


def _batch(image_size, n=2):
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        h, w = image_size - 14 * i, image_size - 28 * i
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 50.0, 60.0], [60.0, 5.0, 80.0, 40.0]]))
        inst.gt_classes = torch.tensor([0, 2])
        img = torch.randint(0, 255, (3, h, w), generator=g, dtype=torch.uint8)
        out.append({"image": img, "instances": inst if i == 0 else inst[:0], "height": h,
                    "width": w})
    return out


@pytest.fixture(scope="module")
def model14():
    torch.manual_seed(0)
    return instantiate(_cfg(patch=14, image_size=112))


def test_patch14_pyramid_has_fractional_strides(model14):
    bb = model14.backbone
    assert bb.strides_float == {"p2": 3.5, "p3": 7.0, "p4": 14.0, "p5": 28.0, "p6": 56.0,
                                "clip_dense": 14.0}
    assert [s.stride for s in bb.output_shape().values()] == [4, 8, 16, 32, 64]  # nominal
    x = torch.zeros(1, 3, 112, 112)
    model14.eval()
    with torch.no_grad():
        feats = bb(x)
    assert {k: tuple(v.shape[-2:]) for k, v in feats.items()} == {
        "p2": (32, 32), "p3": (16, 16), "p4": (8, 8), "p5": (4, 4), "p6": (2, 2),
        "clip_dense": (8, 8)}
    assert torch.allclose(feats["clip_dense"].norm(dim=1), torch.ones(1, 8, 8), atol=1e-4)
    # anchors are centred on the 3.5-pixel grid of p2
    anchors = model14.proposal_generator.anchor_generator([feats["p2"], feats["p3"]])
    centres = anchors[0].get_centers()[:: 3]  # one per position
    assert torch.allclose(centres[1], torch.tensor([3.5, 0.0]))
    assert model14.roi_heads.box_pooler.level_poolers[0].spatial_scale == pytest.approx(1 / 3.5)


def test_tower_is_frozen_and_stays_in_eval(model14):
    model14.train()
    clip = model14.backbone.bottom_up.clip
    assert not clip.training and all(not p.requires_grad for p in clip.parameters())
    trainable = {n.split(".")[0] for n, p in model14.named_parameters() if p.requires_grad}
    assert trainable == {"backbone", "proposal_generator", "roi_heads"}
    assert not any(n.startswith("backbone.bottom_up.clip") and p.requires_grad
                   for n, p in model14.named_parameters())


def test_training_step_and_inference(model14):
    model14.train()
    batch = _batch(112)
    with EventStorage(0):
        losses = model14(batch)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model14.backbone.bottom_up.interpolate1[0].weight.grad is not None
    assert model14.roi_heads.box_predictor.temperature.grad is not None
    model14.eval()
    with torch.no_grad():
        out = model14(batch)
    for o, b in zip(out, batch):
        inst = o["instances"]
        assert inst.image_size == (b["height"], b["width"])
        assert len(inst) <= 100 and (inst.pred_classes < 5).all()
        assert (inst.scores >= 0.01).all()


def test_vocabulary_swap_on_the_model(model14):
    model14.eval()
    new = build_vocabulary(["x", "y"], embeddings=torch.randn(3, 32))
    old = model14.vocabulary
    try:
        model14.set_vocabulary(new)
        assert model14.roi_heads.num_classes == 2
        with torch.no_grad():
            out = model14(_batch(112, n=1))
        assert (out[0]["instances"].pred_classes < 2).all()
    finally:
        model14.set_vocabulary(old)
    assert isinstance(model14.vocabulary, Vocabulary) and model14.vocabulary.num_classes == 5


def test_stride_mismatch_is_reported():
    cfg = _cfg(patch=14, image_size=112)
    bad = copy.deepcopy(cfg)
    bad.proposal_generator.anchor_generator.strides = [4, 8, 16, 32, 64]
    with pytest.raises(ValueError, match="anchor strides"):
        instantiate(bad)
    bad = copy.deepcopy(cfg)
    bad.roi_heads.box_pooler.strides = [4, 8, 16, 32]
    with pytest.raises(ValueError, match="pooler scales"):
        instantiate(bad)
    bad = copy.deepcopy(cfg)
    bad.roi_heads.num_classes = 7
    with pytest.raises(ValueError, match="vocabulary has 5"):
        instantiate(bad)
    assert isinstance(instantiate(cfg), FViT)


def test_patch16_model_matches_nominal_strides():
    model = instantiate(_cfg(patch=16, image_size=128))
    assert model.backbone.strides_float["p2"] == 4.0
    model.eval()
    with torch.no_grad():
        out = model(_batch(128, n=1))
    assert out[0]["instances"].image_size == (128, 128)


def test_lvis_variant_with_class_agnostic_mask_head():
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.roi_heads import MaskRCNNConvUpsampleHead
    from detectron2.structures import BitMasks

    from clipself.modeling.fvit import FloatStrideROIPooler

    cfg = _cfg(patch=14, image_size=112)
    heads = cfg.roi_heads
    heads.mask_in_features = ["p2", "p3", "p4", "p5"]
    heads.mask_pooler = FloatStrideROIPooler(output_size=14, strides=[3.5, 7, 14, 28])
    heads.mask_head = MaskRCNNConvUpsampleHead(
        input_shape=ShapeSpec(channels=16, width=14, height=14), num_classes=1,
        conv_dims=[16] * 5, conv_norm="BN")
    cfg.proposal_generator.head.norm = "BN"
    model = instantiate(cfg)
    batch = _batch(112)
    for b in batch:
        inst = b["instances"]
        m = torch.zeros(len(inst), *inst.image_size, dtype=torch.bool)
        for i, box in enumerate(inst.gt_boxes.tensor.int().tolist()):
            m[i, box[1]:box[3], box[0]:box[2]] = True
        inst.gt_masks = BitMasks(m)
    model.train()
    with EventStorage(0):
        losses = model(batch)
    assert "loss_mask" in losses and torch.isfinite(losses["loss_mask"])
    model.eval()
    with torch.no_grad():
        out = model(batch)
    inst = out[0]["instances"]
    assert inst.pred_masks.shape[1:] == (112, 112)
