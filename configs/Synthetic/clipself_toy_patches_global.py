# The synthetic twin of configs/CLIPSelf/clipself_eva02_b16_coco_patches_global_6ep.py: toy CLIP
# patches distillation plus the image-level term (docs/distillation.md §10) at the same weight.
# tools/global_sweep.py overrides model.global_loss_weight to draw the dense/global trade-off.
from .clipself_toy_patches import dataloader, lr_multiplier, model, optimizer, train

model.global_loss_weight = 0.5
model.global_on_crops = False
dataloader.train.mapper.whole_image_size = "${.crop_size}"  # 64, the toy CLIP's native input

train.output_dir = "./output/synthetic/clipself_toy_patches_global"
