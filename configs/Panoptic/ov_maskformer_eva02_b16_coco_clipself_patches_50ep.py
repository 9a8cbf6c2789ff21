# Open-vocabulary panoptic segmentation (ODISE-style head on a frozen CLIPSelf EVA02-CLIP-B/16,
# paper Table 5): COCO panoptic train, 1024 px LSJ, batch 64, AdamW 1e-4 wd 0.05 (none on norms and
# biases), grad-clip 0.01, 92,188 iterations (~50 epochs) with LR x0.1 at ~82k and ~88.8k,
# evaluated on COCO panoptic val (PQ, mIoU, mask AP). Evaluate on ADE20K-150 with
# `dataloader.test.dataset.names=ade20k_panoptic_val` and the model's vocabulary switched (see
# README).
import torch

from detectron2.config import LazyCall as L

from clipself.solver import adamw, build_param_groups

from ..common.data.panoptic import dataloader
from ..common.models.ov_maskformer import model
from ..common.schedules import warmup_multistep
from ..common.train import train

optimizer = L(adamw)(  # torch.optim.AdamW, fused kernels on CUDA
    params=L(build_param_groups)(
        weight_decay="${..weight_decay}", no_decay_keywords=["norm", "bias"],
        no_decay_ndim_below=2,
    ),
    lr=1e-4,
    betas=(0.9, 0.999),
    weight_decay=0.05,
)
train.max_iter = 92188
lr_multiplier = warmup_multistep(
    max_iter=92188, milestones=[81945, 88789], warmup_iters=250, warmup_factor=0.067
)
train.clip_grad.enabled = True
train.clip_grad.params.max_norm = 0.01
train.eval_period = 4500
train.checkpointer.period = 4500
train.output_dir = "./output/Panoptic/ov_maskformer_eva02_b16_coco_clipself_patches_50ep"
