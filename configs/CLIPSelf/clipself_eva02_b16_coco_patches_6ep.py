# CLIPSelf on EVA02-CLIP-B/16, COCO train2017 image patches (docs/distillation.md §6): 8 GPUs x 2
# images, 6 epochs, AdamW lr 1e-5 wd 0.1, 1000 warm-up iterations + cosine, fp16 AMP, alpha 0.7.
from ..common.data.clipself import dataloader
from ..common.models.clipself import model
from ..common.optim import AdamW as optimizer
from ..common.schedules import warmup_cosine
from ..common.train import train

# 6 ep = 44358 iters * 16 images/iter / 118287 images/ep
train.max_iter = 44358
lr_multiplier = warmup_cosine(max_iter=44358, warmup_iters=1000)
optimizer.lr = 1e-5
optimizer.weight_decay = 0.1

train.eval_period = 7393  # every epoch (the authors also evaluate before training)
train.checkpointer.period = 7393
train.log_period = 20
train.output_dir = "./output/CLIPSelf/clipself_eva02_b16_coco_patches_6ep"
