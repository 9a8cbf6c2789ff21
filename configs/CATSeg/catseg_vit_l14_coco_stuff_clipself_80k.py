# CAT-Seg + CLIPSelf ViT-L/14-336 (paper Table 4, ViT-L row): 336 x 336 CLIP input (24 x 24
# tokens), guidance blocks 7 and 15, 1024-wide tower, 768-d embeddings; schedule as ViT-B/16.
from ..common.models.catseg import set_clip_tower
from .catseg_vit_b16_coco_stuff_clipself_80k import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

set_clip_tower(
    model,
    model_name="ViT-L-14-336",
    pretrained="checkpoints/openai_vitl14_336_coco_clipself_patches.pt",
    out_indices=[7, 15],
    width=1024,
    embed_dim=768,
    clip_resolution=336,
    text_pretrained="openai",
)
model.sliding_window_size = 560  # 336 + a multiple of the 224 stride (2/3 of the window)
train.output_dir = "./output/CATSeg/catseg_vit_l14_coco_stuff_clipself_80k"
