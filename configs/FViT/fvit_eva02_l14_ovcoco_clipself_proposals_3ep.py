# F-ViT, OV-COCO, EVA02-CLIP-L/14-336 refined by CLIPSelf on proposals (Table 3 row 5, 44.3).
from .fvit_eva02_l14_ovcoco_clipself_patches_3ep import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

model.backbone.bottom_up.clip.pretrained = "checkpoints/eva_vitl14_coco_clipself_proposals.pt"
train.output_dir = "./output/FViT/fvit_eva02_l14_ovcoco_clipself_proposals_3ep"
