# F-ViT on the synthetic world with the original toy CLIP as the frozen backbone (the baseline).
from .fvit_toy_clipself import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.clip.pretrained = "./output/demo/toy_clip/toy_clip.pt"
train.output_dir = "./output/synthetic/fvit_toy_original"
