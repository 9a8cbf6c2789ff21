import copy

import pytest
import torch
import torch.nn.functional as F
from detectron2.utils.events import EventStorage

from clipself.distill import CLIPSelf, cosine_distillation_loss, ensemble_state_dicts
from clipself.modeling import CLIPTower, CLIPViT
from clipself.modeling.dense_ops import pool_boxes

TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
VIT = {"name": "tiny-vit", "embed_dim": 32, "text_cfg": TEXT, "vision_cfg": {
    "image_size": 32, "patch_size": 8, "width": 64, "layers": 3, "head_width": 32}}


def _pair():
    torch.manual_seed(0)
    student = CLIPViT(VIT, freeze="clipself")
    teacher = copy.deepcopy(student)
    return CLIPSelf(student=student, teacher=teacher, alpha=0.7)


def _batch(n_images=2, n_boxes=3, size=64, crop=32):
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n_images):
        xy = torch.rand(n_boxes, 2, generator=g) * size / 2
        wh = 8 + torch.rand(n_boxes, 2, generator=g) * size / 2
        out.append({
            "image": torch.randint(0, 255, (3, size, size), generator=g, dtype=torch.uint8),
            "boxes": torch.cat([xy, xy + wh], dim=1),
            "crops": torch.randint(0, 255, (n_boxes, 3, crop, crop), generator=g,
                                   dtype=torch.uint8),
        })
    return out


def test_cosine_loss_zero_for_identical_features():
    x = torch.randn(5, 8)
    assert cosine_distillation_loss(x, 3 * x).abs() < 1e-6
    assert torch.isclose(cosine_distillation_loss(x, -x), torch.tensor(2.0))
    empty = cosine_distillation_loss(torch.zeros(0, 8, requires_grad=True), torch.zeros(0, 8))
    assert empty == 0 and empty.requires_grad


class _Const(torch.nn.Module):
    """A stand-in tower whose dense map and crop embedding are the same vector everywhere."""

    def __init__(self, v):
        super().__init__()
        self.v = torch.nn.Parameter(v)

    def dense_features(self, x):
        return F.normalize(self.v, dim=0)[None, :, None, None].expand(len(x), -1, 4, 4)

    def encode_image(self, x):
        return 2.0 * self.v[None].expand(len(x), -1)


def test_loss_is_zero_when_student_and_teacher_agree():
    v = torch.randn(16)
    model = CLIPSelf(student=_Const(v), teacher=_Const(v.clone())).train()
    with EventStorage():
        loss = model(_batch())["loss_clipself"]
    assert loss.abs() < 1e-6


def test_gradients_reach_only_trainable_parameters_and_teacher_is_fixed():
    model = _pair().train()
    teacher_before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    with EventStorage():
        for _ in range(8):
            loss = model(_batch())["loss_clipself"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert losses[-1] < losses[0]
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    assert not model.teacher.training
    assert all(not p.requires_grad for p in model.teacher.parameters())
    for name, p in model.student.named_parameters():
        if p.requires_grad:
            # only transformer blocks train (docs/distillation.md §1)
            assert "resblocks" in name, name
        else:
            assert p.grad is None, name
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.student.parameters())


def test_inference_uses_the_weight_ensemble():
    model = _pair()
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(0.1)
    model.eval()
    batch = _batch()
    for b in batch:
        b["masks"] = torch.ones(len(b["boxes"]), 8, 8, dtype=torch.bool)
    out = model(batch)
    assert [o["boxes"].shape for o in out] == [(3, 32), (3, 32)]
    expected = copy.deepcopy(model.student)
    expected.load_state_dict(
        ensemble_state_dicts(model.student.state_dict(), model.teacher.state_dict(), 0.7)
    )
    images = model._normalize([b["image"] for b in batch])
    dense = expected.dense_features(images)
    # whole-map masks: mask pooling = mean of the map
    ref = F.normalize(dense.mean(dim=(2, 3)), dim=-1)
    assert torch.allclose(out[0]["masks"][0], ref[0], atol=1e-5)
    student_only = F.normalize(model.student.dense_features(images).mean((2, 3)), dim=-1)
    assert not torch.allclose(out[0]["masks"][0], student_only[0])


def test_ensemble_state_dicts():
    s = {"w": torch.ones(2), "n": torch.tensor(3)}
    t = {"w": torch.zeros(2), "n": torch.tensor(1)}
    out = ensemble_state_dicts(s, t, 0.7)
    assert torch.allclose(out["w"], torch.full((2,), 0.7)) and out["n"] == 3


def test_export_alpha_ensemble_loads_in_clipvit(tmp_path):
    from clipself.distill import export_distilled

    model = _pair()
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(0.05)
    ckpt = tmp_path / "model_final.pth"
    torch.save({"model": model.state_dict(), "iteration": 3}, ckpt)
    export_distilled(str(ckpt), str(tmp_path / "out.pt"), model_name=VIT, alpha=0.5)
    loaded = CLIPViT(VIT, pretrained=str(tmp_path / "out.pt")).eval()
    expected = ensemble_state_dicts(model.student.state_dict(), model.teacher.state_dict(), 0.5)
    for k, v in loaded.state_dict().items():
        assert torch.allclose(v, expected[k]), k


def test_inference_on_images_whose_regions_were_all_filtered_out():
    model = _pair().eval()
    batch = _batch(n_images=2, n_boxes=0)
    for b in batch:
        b["masks"] = torch.zeros(0, 8, 8, dtype=torch.bool)
    out = model(batch)
    assert [tuple(o[k].shape) for o in out for k in ("boxes", "masks", "crops")] == [(0, 32)] * 6
    mixed = _batch(n_images=2, n_boxes=2)
    mixed[0] = batch[0]  # one image without regions next to one with two
    mixed[1]["masks"] = torch.ones(2, 8, 8, dtype=torch.bool)
    out = model(mixed)
    assert [len(o["crops"]) for o in out] == [0, 2]


# --- the image-level term (docs/distillation.md §10) ---------------------------------------

RN = {"embed_dim": 32, "text_cfg": TEXT, "vision_cfg": {
    "image_size": 32, "layers": [1, 1, 1, 1], "width": 16, "head_width": 8}}


def _with_whole_images(batch, side=32):
    g = torch.Generator().manual_seed(2)
    for b in batch:
        b["whole_image"] = torch.randint(0, 255, (3, side, side), generator=g, dtype=torch.uint8)
    return batch


def _perturbed_pair(**kwargs):
    model = _pair()
    model = CLIPSelf(student=model.student, teacher=model.teacher, alpha=0.7, **kwargs)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # student != teacher, so that the image-level term is not at its minimum
        for p in model.student.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _papers_step(model, batch):
    """The paper's loss written out (docs/distillation.md §1), the reference for weight 0."""
    images = model._normalize([x["image"] for x in batch])
    dense = model.student.dense_features(images)
    student = pool_boxes(dense, [x["boxes"].float() for x in batch],
                         images.shape[-1] / dense.shape[-1])
    with torch.no_grad():
        crops = model._normalize([c for x in batch for c in x["crops"]])
        teacher = model.teacher.encode_image(crops)
    return cosine_distillation_loss(student, teacher)


def test_global_weight_zero_is_the_papers_loss_bit_for_bit_and_runs_no_extra_forward():
    model = _perturbed_pair(global_loss_weight=0.0, global_on_crops=True).train()
    reference = copy.deepcopy(model)
    calls = []
    original = model.student.encode_image
    model.student.encode_image = lambda x: calls.append(len(x)) or original(x)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ref_opt = torch.optim.AdamW([p for p in reference.parameters() if p.requires_grad], lr=1e-2)
    with EventStorage():
        for step in range(3):
            batch = _with_whole_images(_batch())  # the records may carry the whole image
            losses = model(batch)
            assert set(losses) == {"loss_clipself"}
            ref = _papers_step(reference, batch)
            assert torch.equal(losses["loss_clipself"], ref), step
            for o, loss in ((opt, losses["loss_clipself"]), (ref_opt, ref)):
                o.zero_grad()
                loss.backward()
                o.step()
    assert calls == []  # the student's encode_image never ran
    for (k, v), (_, w) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(v, w), k


@pytest.mark.parametrize("on_crops", [False, True])
def test_global_term_value_and_gradients_reach_the_student(on_crops):
    model = _perturbed_pair(global_loss_weight=0.5, global_on_crops=on_crops).train()
    batch = _with_whole_images(_batch())
    with EventStorage():
        losses = model(batch)
    assert set(losses) == {"loss_clipself", "loss_global"}
    with torch.no_grad():
        whole = model._normalize([x["whole_image"] for x in batch])
        expected = cosine_distillation_loss(model.student.encode_image(whole),
                                            model.teacher.encode_image(whole))
        if on_crops:
            crops = model._normalize([c for x in batch for c in x["crops"]])
            expected = 0.5 * (expected + cosine_distillation_loss(
                model.student.encode_image(crops), model.teacher.encode_image(crops)))
    assert losses["loss_global"].item() > 1e-4
    assert torch.allclose(losses["loss_global"], 0.5 * expected, atol=1e-6)
    # the paper's term is unchanged by the extra one
    assert torch.equal(losses["loss_clipself"], _papers_step(model, batch))
    losses["loss_global"].backward()
    trainable = [p for p in model.student.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trainable)
    assert sum(p.grad.abs().sum() for p in trainable) > 0
    assert all(p.grad is None for p in model.teacher.parameters())


@pytest.mark.parametrize("tower", [VIT, RN], ids=["vit", "modified_resnet"])
def test_global_term_trains_every_tower_family(tower):
    torch.manual_seed(0)
    student = CLIPTower(tower, freeze="clipself")
    teacher = copy.deepcopy(student)
    model = CLIPSelf(student=student, teacher=teacher, global_loss_weight=1.0,
                     global_on_crops=True).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = _with_whole_images(_batch())
    with EventStorage():
        with torch.no_grad():
            for p in model.student.parameters():
                if p.requires_grad:
                    p.add_(0.05 * torch.randn_like(p))
        first = model(batch)["loss_global"]
        for _ in range(5):
            loss = model(batch)["loss_global"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert loss.item() < first.item()


def test_global_term_without_whole_images_says_which_key_to_set():
    model = _pair()
    model = CLIPSelf(student=model.student, teacher=model.teacher, global_loss_weight=0.1).train()
    with EventStorage(), pytest.raises(ValueError, match="mapper.whole_image_size"):
        model(_batch())
    with pytest.raises(ValueError, match=">= 0"):
        CLIPSelf(student=model.student, teacher=model.teacher, global_loss_weight=-1.0)


def test_inference_returns_the_evaluated_models_image_embedding():
    model = _perturbed_pair().eval()
    batch = _batch()
    for b in batch:
        b["masks"] = torch.ones(len(b["boxes"]), 8, 8, dtype=torch.bool)
    assert all("image" not in o for o in model(batch))  # no whole image: no image output
    out = model(_with_whole_images(batch))
    whole = model._normalize([x["whole_image"] for x in batch])
    expected = F.normalize(model.evaluated_model().encode_image(whole), dim=-1)  # alpha 0.7
    assert [tuple(o["image"].shape) for o in out] == [(32,), (32,)]
    assert torch.allclose(torch.stack([o["image"] for o in out]), expected, atol=1e-6)
    student = F.normalize(model.student.encode_image(whole), dim=-1)
    assert not torch.allclose(out[0]["image"], student[0], atol=1e-4)
