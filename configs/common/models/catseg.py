# CAT-Seg on a CLIPSelf ViT (docs/segmentation.md §8, paper Table 4): OpenAI CLIP ViT-B/16
# refined by CLIPSelf (configs/CLIPSelf/clipself_vit_b16_coco_patches_6ep.py, exported with
# tools/export_clipself.py), images resized to 384 x 384 (24 x 24 tokens); the CLIPSelf dense map
# (value path, full residual, docs/segmentation.md §12) -> cosine cost against 80-template class
# embeddings of the original text tower -> 2 x [spatial (Swin, window 12) + class (linear
# attention)] aggregation -> upsampling decoder guided by blocks 3 and 7 -> per-class logits;
# sigmoid BCE. The tower's attention projections and positional embedding train at LR x 0.01 (the
# paper's CAT-Seg version). Guidance comes from the CLIP tower's own blocks (CAT-Seg's later
# design), not from an extra ResNet/Swin backbone as in the version the paper used
# (docs/segmentation.md §11).
from detectron2.config import LazyCall as L

from clipself.data import dataset_vocabulary
from clipself.modeling import CLIPViT, TextClassifier
from clipself.modeling.catseg import Aggregator, CATSeg, UpsamplingDecoder

WIDTH = 768  # ViT width (guidance block channels)
EMBED = 512  # CLIP embedding dim

model = L(CATSeg)(
    clip=L(CLIPViT)(
        model_name="ViT-B-16",
        pretrained="checkpoints/openai_vitb16_coco_clipself_patches.pt",
        out_indices=[3, 7],
        out_dense=True,
        last_block_mode="v",
        freeze="none",
    ),
    aggregator=L(Aggregator)(
        text_dim=EMBED,
        prompt_channels=80,
        hidden_dim=128,
        appearance_guidance_dim=128,
        text_guidance_dim=128,
        num_layers=2,
        num_heads=4,
        window_size=12,
        pooling_size=2,
        test_pooling_size=1,
        class_budget="${..class_budget}",
    ),
    decoder=L(UpsamplingDecoder)(
        hidden_dim=128,
        decoder_dims=(64, 32),
        guidance_in_channels=WIDTH,
        guidance_up_channels=(256, 128),
        guidance_dims=(32, 16),
    ),
    # one embedding per class and prompt template (the cost volume's channels)
    vocabulary=L(dataset_vocabulary)(
        dataset_name="coco_2017_train_stuff_sem_seg",
        classes="stuff_classes",
        per_template=True,
        text_encoder=L(TextClassifier)(
            model_name="ViT-B-16",
            pretrained="openai",  # the original text tower (CLIPSelf refines the image tower)
            cache_dir="./output/text_embeddings",
        ),
        templates="imagenet",
    ),
    # the classes segmented in eval mode follow the test dataset; seen = those matching a
    # training class by synonym
    test_vocabulary=L(dataset_vocabulary)(
        dataset_name="${...dataloader.test.dataset.names}",
        classes="stuff_classes",
        per_template=True,
        seen_dataset="${..vocabulary.dataset_name}",
        text_encoder="${..vocabulary.text_encoder}",
        templates="${..vocabulary.templates}",
    ),
    class_budget=256,
    clip_finetune="attention",
    clip_resolution=384,
    ignore_value=255,
    sliding_window=False,
    sliding_window_size=640,
)


def set_clip_tower(model, *, model_name, pretrained, out_indices, width, embed_dim,
                   clip_resolution, text_pretrained):
    """Point a CAT-Seg config at another CLIP ViT (guidance blocks, widths, text tower)."""
    clip = model.clip
    clip.model_name = model_name
    clip.pretrained = pretrained
    clip.out_indices = list(out_indices)
    model.aggregator.text_dim = embed_dim
    model.decoder.guidance_in_channels = width
    model.clip_resolution = clip_resolution
    text = model.vocabulary.text_encoder
    text.model_name = model_name
    text.pretrained = text_pretrained
