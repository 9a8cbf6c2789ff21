# CLIPSelf on Perception Encoder PE-Core-L/14-336 (open_clip "PE-Core-L-14-336", meta), COCO
# patches, the paper's L/14-336 recipe (docs/distillation.md §6): input 896 (64 x 64 tokens),
# crops 336, all 24 blocks trained, alpha 0.95. PE-Core has a class token and a MAP head: the
# teacher embedding is the tower's pooled output, the dense map the head's value path per token,
# with 2-D RoPE resized to the 64 x 64 grid (docs/dense_features.md §9).
from .clipself_eva02_l14_coco_patches_6ep import dataloader, lr_multiplier, model, optimizer, train

model.student.model_name = "PE-Core-L-14-336"
model.student.pretrained = "meta"
train.output_dir = "./output/CLIPSelf/clipself_pe_core_l14_336_coco_patches_6ep"
