# F-ViT on OV-COCO with EVA02-CLIP-B/16 refined by CLIPSelf on image patches (paper Table 3 row 1,
# AP50_novel 33.6). 640 x 640 inputs, 3 epochs at batch 64, AdamW 1e-4 (wd 0.1 on everything),
# grad-clip 1.0, 250-iter warm-up, fp16. Put the authors' eva_vitb16_coco_clipself_patches.pt in
# checkpoints/ (or pass model.backbone.bottom_up.clip.pretrained=...).
from ..common.data.fvit import dataloader
from ..common.models.fvit import model
from ..common.optim import AdamW_all_decay as optimizer
from ..common.schedules import warmup_constant
from ..common.train import train

EPOCH_ITERS = 107761 // 64 + 1  # OV-COCO base-class training images / batch
train.max_iter = 3 * EPOCH_ITERS
lr_multiplier = warmup_constant(max_iter=train.max_iter, warmup_iters=250)
optimizer.lr = 1e-4
train.clip_grad.enabled = True  # max_norm 1.0
train.amp.enabled = "auto"  # fp16 on GPUs
train.eval_period = EPOCH_ITERS  # the authors note COCO peaks around epoch 2
train.checkpointer.period = EPOCH_ITERS
train.output_dir = "./output/FViT/fvit_eva02_b16_ovcoco_clipself_patches_3ep"
