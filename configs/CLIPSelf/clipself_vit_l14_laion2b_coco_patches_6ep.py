# CLIPSelf on OpenCLIP ViT-L/14 (LAION-2B, open_clip tag "laion2b_s32b_b82k"), COCO patches, the
# paper's L/14 recipe (docs/distillation.md §6): input 896 (64 x 64 tokens), teacher crops at the
# tower's native 224, alpha 0.95.
from .clipself_eva02_l14_coco_patches_6ep import dataloader, lr_multiplier, model, optimizer, train

model.student.model_name = "ViT-L-14"
model.student.pretrained = "laion2b_s32b_b82k"
dataloader.train.mapper.crop_size = 224
train.output_dir = "./output/CLIPSelf/clipself_vit_l14_laion2b_coco_patches_6ep"
