# F-ViT, OV-LVIS, EVA02-CLIP-L/14-336 refined by CLIPSelf on patches (Table 3 row 8, APr 34.9):
# 896 x 896 inputs, beta 0.4 (the authors note 0.6-0.8 raises APr).
from ..common.data.fvit import set_image_size
from ..common.models.eva02_l14 import IMAGE_SIZE, PATCH, eva02_l14_tower
from ..common.models.fvit import set_clip_tower
from .fvit_eva02_b16_ovlvis_clipself_patches_4x import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

set_clip_tower(
    model,
    **eva02_l14_tower(pretrained="checkpoints/eva_vitl14_lvis_clipself_patches.pt", patch=PATCH),
)
model.roi_heads.box_predictor.clip_ensemble = {"temperature": 50.0, "alpha": 0.1, "beta": 0.4}
set_image_size(dataloader, IMAGE_SIZE)
train.output_dir = "./output/FViT/fvit_eva02_l14_ovlvis_clipself_patches_4x"
