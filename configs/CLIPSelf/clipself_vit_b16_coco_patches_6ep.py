# CLIPSelf on OpenAI CLIP ViT-B/16 (open_clip), COCO patches. Same recipe as EVA02-B/16; the
# OpenAI lock groups are [conv1, class_embedding, ln_pre], positional_embedding, each block;
# ln_post and proj stay frozen (docs/distillation.md §1).
from .clipself_eva02_b16_coco_patches_6ep import dataloader, lr_multiplier, model, optimizer, train

model.student.model_name = "ViT-B-16"
model.student.pretrained = "openai"
train.output_dir = "./output/CLIPSelf/clipself_vit_b16_coco_patches_6ep"
