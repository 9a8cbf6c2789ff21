"""OVMaskFormer end to end on a tiny random model: training losses, inference formats, modes."""
import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.structures import BitMasks, Instances

from clipself.modeling import CLIPViT, FViTBackbone
from clipself.modeling.panoptic import (
    HungarianMatcher,
    MSDeformAttnPixelDecoder,
    MultiScaleMaskedTransformerDecoder,
    OpenVocabClassHead,
    OVMaskFormer,
    SetCriterion,
    make_weight_dict,
)
from clipself.structures import build_vocabulary

TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
VIT = {"name": "tiny-vit-p8", "embed_dim": 32, "text_cfg": TEXT, "vision_cfg": {
    "image_size": 32, "patch_size": 8, "width": 48, "layers": 4, "head_width": 24}}
K, DIM, LAYERS = 4, 32, 3


def _model(mode="ensemble"):
    torch.manual_seed(0)
    clip = CLIPViT(VIT, out_indices=[0, 1, 2, 3], freeze="frozen")
    backbone = FViTBackbone(clip=clip, norm="BN")
    shapes = {f"res{k + 2}": ShapeSpec(channels=48, stride=4 * 2**k) for k in range(4)}
    pixel_decoder = MSDeformAttnPixelDecoder(
        shapes, conv_dim=DIM, mask_dim=DIM, norm="GN", transformer_nheads=4,
        transformer_dim_feedforward=64, transformer_enc_layers=1)
    decoder = MultiScaleMaskedTransformerDecoder(
        in_channels=DIM, hidden_dim=DIM, num_queries=6, nheads=4, dim_feedforward=64,
        dec_layers=LAYERS, mask_dim=DIM,
        class_head=OpenVocabClassHead(hidden_dim=DIM, mask_dim=DIM, text_dim=32, embed_dim=DIM))
    criterion = SetCriterion(
        K, HungarianMatcher(num_points=64), make_weight_dict(num_aux=LAYERS), num_points=64)
    vocab = build_vocabulary(["a", "b", "c", "d"], seen_classes=["a", "b", "c"],
                             thing_classes=["a", "b"], embeddings=torch.randn(K + 1, 32))
    return OVMaskFormer(backbone=backbone, pixel_decoder=pixel_decoder,
                        transformer_decoder=decoder, criterion=criterion, vocabulary=vocab,
                        ensemble_mode=mode, square_pad=64)


def _batch():
    out = []
    for h, w in ((64, 48), (56, 64)):
        inst = Instances((h, w))
        masks = torch.zeros(2, h, w, dtype=torch.bool)
        masks[0, 5:20, 5:25] = True
        masks[1, 30:, :] = True
        inst.gt_masks = BitMasks(masks)
        inst.gt_classes = torch.tensor([0, 3])
        out.append({"image": torch.randint(0, 255, (3, h, w), dtype=torch.uint8),
                    "instances": inst, "height": 2 * h, "width": 2 * w})
    return out


def test_training_losses_are_finite_and_backpropagate():
    model = _model().train()
    losses = model(_batch())
    assert {"loss_ce", "loss_mask", "loss_dice", f"loss_ce_{LAYERS - 1}"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.transformer_decoder.class_head.text_proj.weight.grad is not None
    assert all(p.grad is None for p in model.backbone.clip.parameters())


@pytest.mark.parametrize("mode", ["pred", "clip", "ensemble"])
def test_inference_formats(mode):
    model = _model(mode).eval()
    with torch.no_grad():
        out = model(_batch())
    for res, (h, w) in zip(out, ((128, 96), (112, 128))):
        assert res["sem_seg"].shape == (K, h, w)
        pan, segments = res["panoptic_seg"]
        assert pan.shape == (h, w) and pan.dtype == torch.int32
        assert all(s["category_id"] < K for s in segments)
        inst = res["instances"]
        assert inst.pred_masks.shape[1:] == (h, w)
        assert set(inst.pred_classes.tolist()) <= {0, 1}


def test_modes_differ_and_vocabulary_swaps():
    model = _model("pred").eval()
    batch = _batch()
    with torch.no_grad():
        a = model(batch)[0]["sem_seg"]
        model.ensemble_mode = "clip"
        b = model(batch)[0]["sem_seg"]
    assert not torch.allclose(a, b)
    new = build_vocabulary(["x", "y", "z", "u", "v", "w"], thing_classes=["x"],
                           embeddings=torch.randn(7, 32))
    model.set_vocabulary(new)
    assert model.vocabulary is new and model.thing_ids == [0]
    with torch.no_grad():
        out = model(batch)[0]
    assert out["sem_seg"].shape[0] == 6
    assert model.outputs == ("panoptic_seg", "sem_seg", "instances")
