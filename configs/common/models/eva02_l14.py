# EVA02-CLIP-L/14-336 tower settings shared by the ViT-L configs built on a B/16 parent (F-ViT
# Table 3, OV-MaskFormer Table 5): taps [6, 10, 14, 23], width 1024, 768-d CLIP embeddings,
# 896 x 896 inputs (64 x 64 patches).
IMAGE_SIZE = 896
PATCH = 14
WIDTH = 1024


def eva02_l14_tower(**kwargs):
    """The keyword arguments of a `set_clip_tower` (models/fvit.py, models/ov_maskformer.py) for
    EVA02-CLIP-L/14-336; `kwargs` add the rest: `pretrained`, and `patch=PATCH` (F-ViT) or
    `width=WIDTH` (OV-MaskFormer)."""
    return dict(
        model_name="EVA02-L-14-336",
        out_indices=[6, 10, 14, 23],
        embed_dim=768,
        image_size=IMAGE_SIZE,
        text_pretrained="merged2b_s6b_b61k",  # = EVA02_CLIP_L_336_psz14_s6B
        **kwargs,
    )
