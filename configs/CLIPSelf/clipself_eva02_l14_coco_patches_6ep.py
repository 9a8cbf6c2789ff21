# CLIPSelf on EVA02-CLIP-L/14-336, COCO patches: input 896 (64 x 64 tokens), crops 336, all 24
# blocks trained, alpha 0.95 (docs/distillation.md §6).
from .clipself_eva02_b16_coco_patches_6ep import dataloader, lr_multiplier, model, optimizer, train

model.student.model_name = "EVA02-L-14-336"
model.student.pretrained = "merged2b_s6b_b61k"  # = EVA02_CLIP_L_336_psz14_s6B
model.alpha = 0.95
dataloader.train.mapper.image_size = 896
dataloader.train.mapper.crop_size = 336
dataloader.test.mapper.mask_size = 64  # 896 / 14
train.output_dir = "./output/CLIPSelf/clipself_eva02_l14_coco_patches_6ep"
