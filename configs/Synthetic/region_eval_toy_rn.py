# Region recognition (paper Table 2 protocol) of the CNN toy CLIP (ToyCLIP-RN: ModifiedResNet,
# stride 32, MaskCLIP value path through the attention pool) on the synthetic world, for the
# CNN-vs-ViT comparison of `make demo-cnn` (docs/cnn_vs_vit.md). Only the tower and the mask grid
# differ from the toy ViT's config; run with --eval-only (the CLIPSelf training part is unused).
from .clipself_toy_patches import dataloader, lr_multiplier, model, optimizer, train

model.student.model_name = "ToyCLIP-RN"  # the teacher and the text tower follow the student
model.student.pretrained = "./output/demo_cnn/toy_clip_rn/toy_clip.pt"

# 128 px input -> 4 x 4 dense grid; `make demo-cnn` also evaluates 256 (8 x 8) and 512 px
# (16 x 16, the toy ViT's grid at 128 px) by overriding both sizes
dataloader.test.mapper.mask_size = 4  # 128 / 32
train.output_dir = "./output/demo_cnn/region_rn_128"
