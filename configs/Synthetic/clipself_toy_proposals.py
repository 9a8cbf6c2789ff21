# The synthetic twin of CLIPSelf with region proposals: class-agnostic object boxes (novel
# objects included, no labels), teacher crops enlarged 1.5x.
from .clipself_toy_patches import dataloader, lr_multiplier, model, optimizer, train

dataloader.train.dataset.names = "synth_proposals_train"
dataloader.train.mapper.region_source = "proposals"
dataloader.train.mapper.crop_scale = 1.5
dataloader.train.mapper.min_size = 4.0
train.output_dir = "./output/synthetic/clipself_toy_proposals"
