# Not in the paper: CLIPSelf with mixed regions, up to 10 proposals (object boxes, crops x1.5)
# plus grid cells up to 20 per image, so that objects and background are both distilled.
from .clipself_toy_patches import dataloader, lr_multiplier, model, optimizer, train

dataloader.train.dataset.names = "synth_proposals_train"
dataloader.train.mapper.region_source = "mixed"
dataloader.train.mapper.crop_scale = 1.5
dataloader.train.mapper.min_size = 4.0
train.output_dir = "./output/synthetic/clipself_toy_mixed"
