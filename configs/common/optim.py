# Optimizers. `cfg.optimizer.params.model` is set by train_net.py.
import torch

from detectron2.config import LazyCall as L

from clipself.solver import adamw, build_param_groups

# CLIPSelf (docs/distillation.md §6): AdamW, no weight decay for params with ndim < 2 or names
# containing bn / ln / bias / logit_scale (open_clip's rule).
AdamW = L(adamw)(  # torch.optim.AdamW, fused kernels on CUDA (fused="auto")
    params=L(build_param_groups)(weight_decay="${..weight_decay}"),
    lr=1e-5,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.1,
)

# F-ViT (docs/fvit.md §8): AdamW with weight decay on every parameter.
AdamW_all_decay = L(adamw)(
    params=L(build_param_groups)(
        weight_decay="${..weight_decay}", no_decay_keywords=[], no_decay_ndim_below=0
    ),
    lr=1e-4,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.1,
)

SGD = L(torch.optim.SGD)(
    params=L(build_param_groups)(
        weight_decay="${..weight_decay}", no_decay_keywords=["norm", "bn"], no_decay_ndim_below=2
    ),
    lr=0.02,
    momentum=0.9,
    weight_decay=1e-4,
)
