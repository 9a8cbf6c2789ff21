"""Proposal distillation with the teacher cache trains exactly as without it: the same losses and
the same weights after N AdamW steps, while the teacher embeds each crop only once.

The cache changes which crops the teacher is asked about in one call (only the new ones), and a
CPU's matrix kernels may round a row differently when the batch around it changes (seen on CI:
1 ulp in the loss, amplified by Adam in near-zero gradients). The tests therefore embed the
teacher's crops one at a time in both runs, so that a crop's embedding does not depend on its
batch, and require bitwise equality: any difference then comes from the cache itself."""
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

    def encode_each(x):  # one crop per call: an embedding that does not depend on its batch
        calls.append(len(x))
        return torch.cat([encode(x[i:i + 1]) for i in range(len(x))])

    model.teacher.encode_image = encode_each
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


def test_cache_is_exact_with_new_subsets_and_on_disk(tmp_path):
    batches = _epochs(_proposal_pool(), steps=6, reorder=True)
    ref_losses, ref_sd, ref_crops = _train(batches, None)
    cache = TeacherCache(str(tmp_path))
    losses, sd, crops = _train(batches, cache)
    assert torch.equal(losses, ref_losses)
    assert all(torch.equal(sd[k], ref_sd[k]) for k in ref_sd)
    assert crops < ref_crops and cache.hits > 0
    # a second run with the same teacher reads every crop from disk
    _, _, again = _train(batches, TeacherCache(str(tmp_path)))
    assert again == 0
