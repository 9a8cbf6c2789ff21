# Open-vocabulary panoptic segmentation on a frozen CLIPSelf EVA02-CLIP-L/14-336 (paper Table 5,
# ViT-L row): taps [6, 10, 14, 23], pyramid strides 3.5 / 7 / 14 / 28, 896 x 896 inputs (64 x 64
# patches); everything else as the B/16 config.
from ..common.data.panoptic import set_image_size
from ..common.models.ov_maskformer import set_clip_tower
from .ov_maskformer_eva02_b16_coco_clipself_patches_50ep import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

IMAGE_SIZE = 896
set_clip_tower(
    model,
    model_name="EVA02-L-14-336",
    pretrained="checkpoints/eva_vitl14_coco_clipself_patches.pt",
    out_indices=[6, 10, 14, 23],
    width=1024,
    embed_dim=768,
    image_size=IMAGE_SIZE,
    text_pretrained="merged2b_s6b_b61k",  # = EVA02_CLIP_L_336_psz14_s6B
)
set_image_size(dataloader, IMAGE_SIZE)
train.output_dir = "./output/Panoptic/ov_maskformer_eva02_l14_coco_clipself_patches_50ep"
