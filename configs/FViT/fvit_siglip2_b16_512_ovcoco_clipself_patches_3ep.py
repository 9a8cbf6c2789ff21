# F-ViT on OV-COCO with SigLIP2 ViT-B/16-512 refined by CLIPSelf on patches: the paper's B/16
# recipe (docs/fvit.md §1: 640 x 640 inputs, 3 epochs at batch 64) on another tower family; taps
# [3, 5, 7, 11], patch 16 and the 768-d embedding come from the tower (set_clip_tower_of).
# Make the checkpoint with configs/CLIPSelf/clipself_siglip2_b16_512_coco_patches_6ep.py, then
#   tools/export_clipself.py \
#       --config-file configs/CLIPSelf/clipself_siglip2_b16_512_coco_patches_6ep.py \
#       --checkpoint <run>/model_final.pth \
#       --output checkpoints/siglip2_b16_512_coco_clipself_patches.pt
# The SigLIP2 tokenizer comes from the Hugging Face hub; offline, pass a local copy with
# model.roi_heads.box_predictor.vocabulary.text_encoder.tokenizer=/path/to/ViT-B-16-SigLIP2-512
from ..common.models.fvit import set_clip_tower_of
from .fvit_eva02_b16_ovcoco_clipself_patches_3ep import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

set_clip_tower_of(
    model,
    model_name="ViT-B-16-SigLIP2-512",
    pretrained="checkpoints/siglip2_b16_512_coco_clipself_patches.pt",
    image_size=640,
    text_pretrained="webli",
)
train.output_dir = "./output/FViT/fvit_siglip2_b16_512_ovcoco_clipself_patches_3ep"
