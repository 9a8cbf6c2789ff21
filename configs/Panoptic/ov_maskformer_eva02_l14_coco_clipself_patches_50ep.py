# Open-vocabulary panoptic segmentation on a frozen CLIPSelf EVA02-CLIP-L/14-336 (paper Table 5,
# ViT-L row): taps [6, 10, 14, 23], pyramid strides 3.5 / 7 / 14 / 28, 896 x 896 inputs (64 x 64
# patches); everything else as the B/16 config.
from ..common.data.panoptic import set_image_size
from ..common.models.eva02_l14 import IMAGE_SIZE, WIDTH, eva02_l14_tower
from ..common.models.ov_maskformer import set_clip_tower
from .ov_maskformer_eva02_b16_coco_clipself_patches_50ep import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

set_clip_tower(
    model,
    **eva02_l14_tower(pretrained="checkpoints/eva_vitl14_coco_clipself_patches.pt", width=WIDTH),
)
set_image_size(dataloader, IMAGE_SIZE)
train.output_dir = "./output/Panoptic/ov_maskformer_eva02_l14_coco_clipself_patches_50ep"
