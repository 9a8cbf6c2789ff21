# F-ViT, OV-COCO, EVA02-CLIP-L/14-336 refined by CLIPSelf on patches (Table 3 row 4, 38.4):
# taps [6, 10, 14, 23], fractional strides 3.5 .. 56, 896 x 896 inputs.
from ..common.data.fvit import set_image_size
from ..common.models.eva02_l14 import IMAGE_SIZE, PATCH, eva02_l14_tower
from ..common.models.fvit import set_clip_tower
from .fvit_eva02_b16_ovcoco_clipself_patches_3ep import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

set_clip_tower(
    model,
    **eva02_l14_tower(pretrained="checkpoints/eva_vitl14_coco_clipself_patches.pt", patch=PATCH),
)
set_image_size(dataloader, IMAGE_SIZE)
train.output_dir = "./output/FViT/fvit_eva02_l14_ovcoco_clipself_patches_3ep"
