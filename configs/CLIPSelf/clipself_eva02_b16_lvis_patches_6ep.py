# CLIPSelf on EVA02-CLIP-B/16, LVIS v1 train images (patches), for the OV-LVIS detector.
from ..common.schedules import warmup_cosine
from .clipself_eva02_b16_coco_patches_6ep import dataloader, model, optimizer, train

dataloader.train.dataset.names = "lvis_v1_train"
# 6 ep = 37564 iters * 16 images/iter / 100170 images/ep
train.max_iter = 37564
lr_multiplier = warmup_cosine(max_iter=37564, warmup_iters=1000)
train.eval_period = 6261
train.checkpointer.period = 6261
train.output_dir = "./output/CLIPSelf/clipself_eva02_b16_lvis_patches_6ep"
