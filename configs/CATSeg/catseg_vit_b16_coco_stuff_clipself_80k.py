# CAT-Seg + CLIPSelf ViT-B/16 (paper Table 4): COCO-Stuff-171 training, 80k iterations x batch 4,
# AdamW lr 2e-4 (tower x 0.01), weight decay 1e-4 (none on norms and embeddings), cosine schedule
# without warm-up, gradient clipping 0.01; evaluated on ADE20K-150 during training. Other test sets:
# configs/CATSeg/catseg_vit_b16_eval.py.
import torch

from detectron2.config import LazyCall as L

from clipself.modeling.catseg import catseg_param_groups
from clipself.solver import adamw

from ..common.data.semseg import dataloader
from ..common.models.catseg import model
from ..common.schedules import warmup_cosine
from ..common.train import train

optimizer = L(adamw)(  # torch.optim.AdamW, fused kernels on CUDA
    params=L(catseg_param_groups)(
        base_lr="${..lr}", weight_decay="${..weight_decay}", clip_multiplier=0.01
    ),
    lr=2e-4,
    betas=(0.9, 0.999),
    weight_decay=1e-4,
)
train.max_iter = 80000
lr_multiplier = warmup_cosine(max_iter=80000, warmup_iters=0, warmup_factor=1.0)
train.clip_grad.enabled = True
train.clip_grad.params.max_norm = 0.01
train.eval_period = 5000
train.checkpointer.period = 5000
train.output_dir = "./output/CATSeg/catseg_vit_b16_coco_stuff_clipself_80k"
