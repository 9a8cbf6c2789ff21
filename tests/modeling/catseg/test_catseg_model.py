"""CATSeg end to end on a tiny random CLIP ViT: loss, inference formats, vocabulary swaps."""
import pytest
import torch
import torch.nn.functional as F

from clipself.modeling import CLIPViT
from clipself.modeling.catseg import (
    Aggregator,
    CATSeg,
    UpsamplingDecoder,
    onehot_targets,
    sigmoid_bce_loss,
)
from clipself.structures import Vocabulary

TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
# 32 px, patch 8 (4x4 grid at clip_resolution 32), width 48, 3 blocks; guidance from blocks 0, 1
VIT = {"name": "tiny-vit-catseg", "embed_dim": 32, "text_cfg": TEXT, "vision_cfg": {
    "image_size": 32, "patch_size": 8, "width": 48, "layers": 3, "head_width": 24}}
P = 2


def _vocab(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Vocabulary(tuple(f"class{i}" for i in range(n)),
                      F.normalize(torch.randn(n, P, 32, generator=g), dim=-1))


def _model(num_classes=4, class_budget=6, **kw):
    torch.manual_seed(0)
    clip = CLIPViT(VIT, out_indices=[0, 1], out_dense=True)
    agg = Aggregator(text_dim=32, prompt_channels=P, hidden_dim=16, appearance_guidance_dim=8,
                     text_guidance_dim=8, num_layers=1, num_heads=2, window_size=2,
                     class_budget=class_budget)
    dec = UpsamplingDecoder(hidden_dim=16, decoder_dims=(16, 8), guidance_in_channels=48,
                            guidance_up_channels=(8, 8), guidance_dims=(4, 2))
    args = dict(clip=clip, aggregator=agg, decoder=dec, vocabulary=_vocab(num_classes),
                class_budget=class_budget, clip_resolution=32)
    args.update(kw)
    return CATSeg(**args)


def _batch(num_classes=4):
    g = torch.Generator().manual_seed(0)
    out = []
    for h, w in ((32, 48), (40, 32)):
        sem = torch.randint(0, num_classes, (h, w), generator=g)
        sem[:4] = 255
        out.append({"image": torch.randint(0, 255, (3, h, w), dtype=torch.uint8, generator=g),
                    "sem_seg": sem, "height": 2 * h, "width": 2 * w})
    return out


def test_bce_loss_averages_ignored_pixels_with_zero_targets():
    logits = torch.randn(1, 3, 2, 2)
    targets = torch.tensor([[[0, 2], [255, 1]]])
    onehot = onehot_targets(targets, 3, 255)
    assert onehot[0, :, 1, 0].tolist() == [0.0, 0.0, 0.0] and onehot[0, 2, 0, 1] == 1
    want = -(onehot * F.logsigmoid(logits) + (1 - onehot) * F.logsigmoid(-logits)).mean()
    torch.testing.assert_close(sigmoid_bce_loss(logits, targets, 255), want)
    with pytest.raises(ValueError, match="outside"):
        onehot_targets(torch.tensor([[[3]]]), 3, 255)


def test_loss_decreases_on_a_tiny_overfit():
    model = _model().train()
    batch = _batch()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(8):
        loss = model(batch)["loss_sem_seg"]
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    # the CLIP tower fine-tunes its attention only (default policy)
    clip_grads = {n for n, p in model.clip.named_parameters() if p.grad is not None}
    assert clip_grads and all("attn" in n or "positional" in n for n in clip_grads)


def test_inference_format_and_vocabulary_swap():
    model = _model().eval()
    batch = _batch()
    with torch.no_grad():
        out = model(batch)
    for res, (h, w) in zip(out, ((64, 96), (80, 64))):
        assert res["sem_seg"].shape == (4, h, w)
        assert 0 <= float(res["sem_seg"].min()) and float(res["sem_seg"].max()) <= 1
    new = _vocab(3, seed=1)
    model.set_vocabulary(new)  # no retraining
    assert model.vocabulary is new
    with torch.no_grad():
        out = model(batch)
    assert out[0]["sem_seg"].shape == (3, 64, 96)
    assert not any("text_embeddings" in k for k in model.state_dict())  # never in checkpoints
    model.train()  # set_vocabulary serves both modes
    assert model.vocabulary is new and model.text_embeddings.shape[0] == 3
    model.eval()
    with pytest.raises(ValueError, match="templates"):
        model.set_vocabulary(Vocabulary(("a",), torch.randn(1, P + 1, 32)))
    with pytest.raises(ValueError, match="dim"):
        model.set_vocabulary(Vocabulary(("a",), torch.randn(1, P, 16)))


def test_separate_test_vocabulary():
    model = _model(test_vocabulary=_vocab(5, seed=2))
    loss = model(_batch())["loss_sem_seg"]  # training: 4 classes (labels < 4)
    assert torch.isfinite(loss)
    model.eval()
    with torch.no_grad():
        assert model(_batch())[0]["sem_seg"].shape[0] == 5
    assert model.num_classes == 5


def test_vocabulary_larger_than_the_class_budget():
    model = _model(class_budget=6).eval()
    model.set_vocabulary(_vocab(9))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model.predict(images)
        out = model([{"image": torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8)}])
    assert logits.shape == (2, 9, 16, 16)
    dropped = (logits == -100).flatten(2).all(-1)  # (B, T)
    assert dropped.sum(1).tolist() == [3, 3]
    assert torch.isfinite(logits).all()
    scores = out[0]["sem_seg"]
    assert scores.shape == (9, 32, 32)
    assert int((scores.flatten(1).amax(1) < 1e-30).sum()) == 3


def test_native_resolution_without_clip_resize():
    model = _model(clip_resolution=None).eval()
    batch = _batch()
    with torch.no_grad():
        out = model(batch)
    assert out[1]["sem_seg"].shape == (4, 80, 64)
    logits = model.predict(torch.randn(1, 3, 40, 48))
    assert logits.shape == (1, 4, 20, 24)  # 4x the 5x6 token grid


def test_sliding_window_inference():
    model = _model(sliding_window=True, sliding_window_size=48, sliding_window_stride=16).eval()
    batch = _batch()
    with torch.no_grad():
        out = model(batch)
    for res, (h, w) in zip(out, ((64, 96), (80, 64))):
        s = res["sem_seg"]
        assert s.shape == (4, h, w) and torch.isfinite(s).all()
        assert 0 <= float(s.min()) and float(s.max()) <= 1
    # one window covering the whole image: windows and global view coincide
    model.sliding_window_size = (32, 32)
    with torch.no_grad():
        out = model(batch)
    assert out[0]["sem_seg"].shape == (4, 64, 96)
    with pytest.raises(ValueError, match="sliding window"):
        _model(sliding_window=True, sliding_window_size=40, sliding_window_stride=16)


def test_sliding_window_fold_normalisation_is_exact():
    """With a "network" whose logits are the window's own first input channel (at the window's
    resolution), overlapping windows agree, so the fold-averaged local map must equal sigmoid of
    the image exactly, and the output is (local + global view) / 2."""
    model = _model(sliding_window=True, sliding_window_size=48, sliding_window_stride=8).eval()
    model.predict = lambda images: images[:, :1].repeat(1, 4, 1, 1) * torch.tensor(
        [1.0, -1.0, 0.5, 2.0]).view(1, 4, 1, 1)  # (N, 4, 32, 32): 4 classes, at window size
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 255, (3, 48, 48), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        out = model([{"image": image, "height": 48, "width": 48}])[0]["sem_seg"]
    x = model._normalize(image)[:1]  # (1, 48, 48)
    scale = torch.tensor([1.0, -1.0, 0.5, 2.0]).view(4, 1, 1)
    local = torch.sigmoid(x * scale)  # (4, 48, 48)
    small = F.interpolate(x[None], size=(32, 32), mode="bilinear", align_corners=False)[0]
    whole = F.interpolate(torch.sigmoid(small * scale)[None], size=(48, 48), mode="bilinear",
                          align_corners=False)[0]
    torch.testing.assert_close(out, (local + whole) / 2, rtol=1e-5, atol=1e-6)


def test_construction_checks():
    with pytest.raises(ValueError, match="not tapped"):
        _model(guidance_blocks=[0, 2])
    torch.manual_seed(0)
    frozen = CLIPViT(VIT, out_indices=[0, 1], freeze="frozen")
    with pytest.raises(ValueError, match="trainable tower"):
        _model(clip=frozen)
    m = _model(clip=frozen, clip_finetune="frozen")
    assert not any(p.requires_grad for p in m.clip.parameters())


def test_outputs_through_sem_seg_evaluator_with_known_miou(tmp_path):
    """The inference path (sigmoid, resize, crop, ``sem_seg_postprocess``) feeds Detectron2's
    SemSegEvaluator: logits equal to the ground truth give mIoU 100, swapping two classes in one
    half of the image gives the hand-computed value."""
    import itertools

    import numpy as np
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.evaluation import SemSegEvaluator
    from PIL import Image

    gt = np.zeros((32, 48), dtype=np.uint8)  # 4 classes in 16 x 16 blocks (multiples of 4)
    gt[:, 16:32] = 1
    gt[:16, 32:] = 2
    gt[16:, 32:] = 3
    Image.fromarray(gt).save(tmp_path / "gt.png")
    name = f"test_catseg_semseg_{next(itertools.count())}_{id(tmp_path)}"
    record = {"file_name": "x.png", "sem_seg_file_name": str(tmp_path / "gt.png")}
    DatasetCatalog.register(name, lambda: [record])
    MetadataCatalog.get(name).set(stuff_classes=[f"class{i}" for i in range(4)],
                                  ignore_label=255)
    model = _model(clip_resolution=None).eval()

    def run(labels):
        onehot = F.one_hot(torch.from_numpy(labels).long(), 4).permute(2, 0, 1).float()
        logits = 20 * onehot[None] - 10  # (1, 4, 32, 48): +10 on the class, -10 elsewhere
        model.predict = lambda images: F.avg_pool2d(logits, 4)  # the model's 1/4 resolution
        out = model([{"image": torch.zeros(3, 32, 48, dtype=torch.uint8), "height": 32,
                      "width": 48}])
        ev = SemSegEvaluator(name, distributed=False)
        ev.reset()
        ev.process([record], out)
        return ev.evaluate()["sem_seg"]

    assert run(gt)["mIoU"] == pytest.approx(100.0)
    swapped = gt.copy()
    swapped[:, 24:32] = 0  # half of class 1 predicted as class 0
    res = run(swapped)
    # class 0: TP 512, FP 256 -> 2/3; class 1: TP 256, FN 256 -> 1/2; classes 2, 3: 1
    assert res["mIoU"] == pytest.approx(100 * (2 / 3 + 1 / 2 + 1 + 1) / 4)
