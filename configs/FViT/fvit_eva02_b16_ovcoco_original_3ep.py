# F-ViT, OV-COCO, the original EVA02-CLIP-B/16 (no CLIPSelf): the baseline CLIPSelf improves on.
from .fvit_eva02_b16_ovcoco_clipself_patches_3ep import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

model.backbone.bottom_up.clip.pretrained = "merged2b_s8b_b131k"  # = EVA02_CLIP_B_psz16_s8B
train.output_dir = "./output/FViT/fvit_eva02_b16_ovcoco_original_3ep"
