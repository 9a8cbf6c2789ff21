# F-ViT, OV-COCO, EVA02-CLIP-B/16 refined by CLIPSelf on region proposals (Table 3 row 2, 37.6).
from .fvit_eva02_b16_ovcoco_clipself_patches_3ep import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

model.backbone.bottom_up.clip.pretrained = "checkpoints/eva_vitb16_coco_clipself_proposals.pt"
train.output_dir = "./output/FViT/fvit_eva02_b16_ovcoco_clipself_proposals_3ep"
