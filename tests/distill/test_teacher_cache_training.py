"""Proposal distillation with the teacher cache trains exactly as without it: the same losses and
the same weights after N AdamW steps, while the teacher embeds each crop only once."""
import copy

import torch

from clipself.distill import CLIPSelf, TeacherCache
from clipself.modeling import CLIPViT

TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
VIT = {"name": "tiny-vit-cache", "embed_dim": 32, "text_cfg": TEXT, "vision_cfg": {
    "image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32}}


def _proposal_pool(n_images=3, n_props=5, size=64, crop=32):
    """Per image: its proposals (crop boxes and the crops cut from them, fixed pixels)."""
    g = torch.Generator().manual_seed(0)
    pool = []
    for i in range(n_images):
        xy = torch.rand(n_props, 2, generator=g) * size / 2
        boxes = torch.cat([xy, xy + 8 + torch.rand(n_props, 2, generator=g) * size / 2], 1)
        pool.append({
            "file_name": f"img{i}.png",
            "image": torch.randint(0, 255, (3, size, size), generator=g, dtype=torch.uint8),
            "boxes": boxes,
            "crop_boxes": boxes * 1.5,
            "crops": torch.randint(0, 255, (n_props, 3, crop, crop), generator=g,
                                   dtype=torch.uint8),
        })
    return pool


def _epochs(pool, steps, reorder):
    """Batches of 2 images; each step draws a subset of each image's proposals (the same draws
    in both runs). ``reorder=False`` repeats the first epoch's batches exactly."""
    g = torch.Generator().manual_seed(1)
    batches = []
    for step in range(steps):
        batch = []
        for j in range(2):
            rec = pool[(2 * step + j) % len(pool)]
            keep = torch.randperm(5, generator=g)[:3] if reorder else torch.arange(3)
            batch.append({k: (v[keep] if k in ("boxes", "crop_boxes", "crops") else v)
                          for k, v in rec.items()})
        batches.append(batch)
    return batches


def _train(batches, cache):
    torch.manual_seed(0)
    student = CLIPViT(VIT, freeze="clipself")
    model = CLIPSelf(student=student, teacher=copy.deepcopy(student), teacher_cache=cache).train()
    calls = []
    encode = model.teacher.encode_image
    model.teacher.encode_image = lambda x: (calls.append(len(x)), encode(x))[1]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for batch in batches:
        loss = sum(model(batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses), model.student.state_dict(), sum(calls)


def test_cache_is_exact_when_batches_repeat():
    batches = _epochs(_proposal_pool(), steps=6, reorder=False)  # 4 passes over 3 images
    ref_losses, ref_sd, ref_crops = _train(batches, None)
    losses, sd, crops = _train(batches, TeacherCache())
    assert torch.equal(losses, ref_losses)
    assert all(torch.equal(sd[k], ref_sd[k]) for k in ref_sd)
    assert ref_crops == 6 * 2 * 3 and crops == 3 * 3  # 9 distinct crops embedded once each


def test_cache_with_new_subsets_matches_to_rounding(tmp_path):
    batches = _epochs(_proposal_pool(), steps=6, reorder=True)
    ref_losses, ref_sd, ref_crops = _train(batches, None)
    cache = TeacherCache(str(tmp_path))
    losses, sd, crops = _train(batches, cache)
    torch.testing.assert_close(losses, ref_losses, atol=1e-6, rtol=0)
    # Adam divides by the gradient's running RMS: a 1e-7 difference in a near-zero gradient can
    # move a weight by a sizeable fraction of one step (lr 1e-3): 2e-5 is 0.3% of 6 steps
    for k in ref_sd:
        torch.testing.assert_close(sd[k], ref_sd[k], atol=2e-5, rtol=0)
    assert crops < ref_crops and cache.hits > 0
    # a second run with the same teacher reads every crop from disk
    _, _, again = _train(batches, TeacherCache(str(tmp_path)))
    assert again == 0
