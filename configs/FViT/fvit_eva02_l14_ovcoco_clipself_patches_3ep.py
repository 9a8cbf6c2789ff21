# F-ViT, OV-COCO, EVA02-CLIP-L/14-336 refined by CLIPSelf on patches (Table 3 row 4, 38.4):
# taps [6, 10, 14, 23], fractional strides 3.5 .. 56, 896 x 896 inputs.
from ..common.data.fvit import set_image_size
from ..common.models.fvit import set_clip_tower
from .fvit_eva02_b16_ovcoco_clipself_patches_3ep import (
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
    patch=14,
    embed_dim=768,
    image_size=IMAGE_SIZE,
    text_pretrained="merged2b_s6b_b61k",  # = EVA02_CLIP_L_336_psz14_s6B
)
set_image_size(dataloader, IMAGE_SIZE)
train.output_dir = "./output/FViT/fvit_eva02_l14_ovcoco_clipself_patches_3ep"
