# F-ViT, OV-COCO, the original EVA02-CLIP-L/14-336 (no CLIPSelf).
from .fvit_eva02_l14_ovcoco_clipself_patches_3ep import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

model.backbone.bottom_up.clip.pretrained = "merged2b_s6b_b61k"  # = EVA02_CLIP_L_336_psz14_s6B
train.output_dir = "./output/FViT/fvit_eva02_l14_ovcoco_original_3ep"
