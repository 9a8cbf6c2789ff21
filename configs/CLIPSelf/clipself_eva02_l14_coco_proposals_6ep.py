# CLIPSelf on EVA02-CLIP-L/14-336 with region proposals.
from .clipself_eva02_l14_coco_patches_6ep import dataloader, lr_multiplier, model, optimizer, train

dataloader.train.dataset.names = "coco_2017_train_clipself_proposals"
dataloader.train.mapper.region_source = "proposals"
dataloader.train.mapper.crop_scale = 1.5
train.output_dir = "./output/CLIPSelf/clipself_eva02_l14_coco_proposals_6ep"
