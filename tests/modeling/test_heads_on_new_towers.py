"""F-ViT, the panoptic head (OVMaskFormer) and CAT-Seg on SigLIP2 and PE-Core towers (shrunk:
the real timm architectures, width 48, 4 blocks, patch 8): taps, strides and widths come from
the tower; a training step backpropagates into the head only (or the attention only, CAT-Seg) and
inference gives the usual formats."""
import importlib.util
import os

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import LazyConfig, instantiate
from detectron2.layers import ShapeSpec
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from clipself.modeling import CLIPTower, FViTBackbone
from clipself.modeling.catseg import Aggregator as CATSegAggregator
from clipself.modeling.catseg import CATSeg, UpsamplingDecoder
from clipself.modeling.panoptic import (
    HungarianMatcher,
    MSDeformAttnPixelDecoder,
    MultiScaleMaskedTransformerDecoder,
    OpenVocabClassHead,
    OVMaskFormer,
    SetCriterion,
    make_weight_dict,
)
from clipself.structures import Vocabulary, build_vocabulary

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
WIDTH, EMBED = 48, 48  # no open_clip projection: the CLIP embedding is the trunk width


def _timm(name, timm_name, **kwargs):
    timm_kwargs = dict({"img_size": 32, "patch_size": 8, "embed_dim": WIDTH, "depth": 4,
                        "num_heads": 2}, **kwargs)
    return {"name": name, "embed_dim": EMBED, "text_cfg": TEXT, "vision_cfg": {
        "image_size": 32, "timm_model_name": timm_name, "timm_pool": "map",
        "timm_proj": "none" if "siglip" in timm_name else None,
        "timm_model_kwargs": timm_kwargs}}


TOWERS = {
    "siglip2": _timm("tiny-siglip2", "vit_base_patch16_siglip_224"),
    "pe_core": _timm("tiny-pe-core", "vit_pe_core_base_patch16_224", attn_pool_num_heads=2),
}
FAMILIES = sorted(TOWERS)


def _fvit_config(model_name, num_classes=4):
    path = os.path.join(ROOT, "configs/common/models/fvit.py")
    spec = importlib.util.spec_from_file_location("fvit_model_config_towers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = LazyConfig.load(path).model
    module.set_clip_tower(model, model_name=model_name, pretrained=None,
                          out_indices=[0, 1, 2, 3], patch=8, embed_dim=EMBED, image_size=64,
                          text_pretrained=None)
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
    voc.embeddings = torch.randn(num_classes + 1, EMBED,
                                 generator=torch.Generator().manual_seed(0))
    return model


def _detection_batch():
    out = []
    for h, w in ((64, 64), (48, 56)):
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.tensor([[4.0, 6.0, 30.0, 40.0], [30.0, 2.0, 44.0, 20.0]]))
        inst.gt_classes = torch.tensor([0, 2])
        out.append({"image": torch.randint(0, 255, (3, h, w), dtype=torch.uint8),
                    "instances": inst, "height": h, "width": w})
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_fvit_on_tower(family):
    torch.manual_seed(0)
    model = instantiate(_fvit_config(TOWERS[family]))
    clip = model.backbone.bottom_up.clip
    assert clip.family == {"siglip2": "timm_vit", "pe_core": "eva"}[family]
    assert clip.patch_size == 8
    assert model.backbone.strides_float["p2"] == 2.0 and model.backbone.strides_float["p6"] == 32.0
    model.train()
    with EventStorage(0):
        losses = model(_detection_batch())
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is None for p in clip.parameters())
    model.eval()
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 3, 64, 48))
        out = model(_detection_batch())
    assert tuple(feats["clip_dense"].shape) == (1, EMBED, 8, 6)
    assert tuple(feats["p2"].shape[-2:]) == (32, 24)
    assert all(len(o["instances"]) <= 100 for o in out)


def _segmentation_batch():
    out = []
    for h, w in ((64, 48), (56, 64)):
        inst = Instances((h, w))
        masks = torch.zeros(2, h, w, dtype=torch.bool)
        masks[0, 5:20, 5:25] = True
        masks[1, 30:, :] = True
        inst.gt_masks = BitMasks(masks)
        inst.gt_classes = torch.tensor([0, 3])
        sem = torch.randint(0, 4, (h, w))
        out.append({"image": torch.randint(0, 255, (3, h, w), dtype=torch.uint8),
                    "instances": inst, "sem_seg": sem, "height": h, "width": w})
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_panoptic_head_on_tower(family):
    torch.manual_seed(0)
    clip = CLIPTower(TOWERS[family], out_indices=[0, 1, 2, 3], freeze="frozen")
    backbone = FViTBackbone(clip=clip, norm="BN")
    shapes = {n: ShapeSpec(channels=s.channels, stride=s.stride)
              for n, s in backbone.output_shape().items()}
    assert all(s.channels == WIDTH for s in shapes.values())
    dim, layers = 32, 2
    decoder = MultiScaleMaskedTransformerDecoder(
        in_channels=dim, hidden_dim=dim, num_queries=6, nheads=4, dim_feedforward=64,
        dec_layers=layers, mask_dim=dim,
        class_head=OpenVocabClassHead(hidden_dim=dim, mask_dim=dim, text_dim=EMBED,
                                      embed_dim=dim))
    vocab = build_vocabulary(["a", "b", "c", "d"], seen_classes=["a", "b", "c"],
                             thing_classes=["a", "b"], embeddings=torch.randn(5, EMBED))
    model = OVMaskFormer(
        backbone=backbone,
        pixel_decoder=MSDeformAttnPixelDecoder(
            shapes, conv_dim=dim, mask_dim=dim, norm="GN", transformer_nheads=4,
            transformer_dim_feedforward=64, transformer_enc_layers=1),
        transformer_decoder=decoder,
        criterion=SetCriterion(4, HungarianMatcher(num_points=64),
                               make_weight_dict(num_aux=layers), num_points=64),
        vocabulary=vocab, ensemble_mode="ensemble", square_pad=64)
    model.train()
    total = sum(model(_segmentation_batch()).values())
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is None for p in clip.parameters())
    model.eval()
    with torch.no_grad():
        out = model(_segmentation_batch())
    pan, segments = out[0]["panoptic_seg"]
    assert out[0]["sem_seg"].shape == (4, 64, 48) and pan.shape == (64, 48)


@pytest.mark.parametrize("family", FAMILIES)
def test_catseg_on_tower(family):
    torch.manual_seed(0)
    prompts = 2
    clip = CLIPTower(TOWERS[family], out_indices=[0, 1], out_dense=True)
    vocab = Vocabulary(tuple(f"class{i}" for i in range(4)),
                       F.normalize(torch.randn(4, prompts, EMBED), dim=-1))
    model = CATSeg(
        clip=clip,
        aggregator=CATSegAggregator(
            text_dim=EMBED, prompt_channels=prompts, hidden_dim=16, appearance_guidance_dim=8,
            text_guidance_dim=8, num_layers=1, num_heads=2, window_size=2, class_budget=6),
        decoder=UpsamplingDecoder(hidden_dim=16, decoder_dims=(16, 8),
                                  guidance_in_channels=WIDTH, guidance_up_channels=(8, 8),
                                  guidance_dims=(4, 2)),
        vocabulary=vocab, class_budget=6, clip_resolution=32)
    model.train()
    loss = model(_segmentation_batch())["loss_sem_seg"]
    assert torch.isfinite(loss)
    loss.backward()
    tuned = {n for n, p in clip.named_parameters() if p.grad is not None}
    assert tuned and all(".attn." in n or n.endswith("pos_embed") for n in tuned), tuned
    model.eval()
    with torch.no_grad():
        out = model(_segmentation_batch())
    assert out[0]["sem_seg"].shape == (4, 64, 48)
