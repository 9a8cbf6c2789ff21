# CLIPSelf on EVA02-CLIP-L/14-336, LVIS v1 train images (patches).
from .clipself_eva02_b16_lvis_patches_6ep import dataloader, lr_multiplier, model, optimizer, train

model.student.model_name = "EVA02-L-14-336"
model.student.pretrained = "merged2b_s6b_b61k"
model.alpha = 0.95
dataloader.train.mapper.image_size = 896
dataloader.train.mapper.crop_size = 336
train.output_dir = "./output/CLIPSelf/clipself_eva02_l14_lvis_patches_6ep"
