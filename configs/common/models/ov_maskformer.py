# Open-vocabulary Mask2Former on a frozen CLIPSelf ViT (docs/segmentation.md §2): the F-ViT simple
# pyramid (taps [3, 5, 7, 11] of EVA02-CLIP-B/16) -> 6-layer deformable pixel decoder ->
# 9-layer masked-attention decoder (100 queries) with the ODISE label-model class head against
# CLIP text embeddings -> at test the CLIP score of the same ViT's dense map, mask-pooled, and the
# geometric ensemble (alpha 0.35 seen, beta 0.65 unseen). Defaults: COCO panoptic, 1024 px.
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from clipself.data import dataset_vocabulary
from clipself.modeling import CLIPViT, FViTBackbone, TextClassifier
from clipself.modeling.panoptic import (
    HungarianMatcher,
    MSDeformAttnPixelDecoder,
    MultiScaleMaskedTransformerDecoder,
    OpenVocabClassHead,
    OVMaskFormer,
    SetCriterion,
    make_weight_dict,
)

WIDTH = 768  # ViT width (res2..res5 channels)
EMBED = 512  # CLIP embedding dim (text embeddings)
DEC_LAYERS = 9
NUM_POINTS = 12544

model = L(OVMaskFormer)(
    backbone=L(FViTBackbone)(
        clip=L(CLIPViT)(
            model_name="EVA02-B-16",
            pretrained="checkpoints/eva_vitb16_coco_clipself_patches.pt",
            out_indices=[3, 5, 7, 11],
            freeze="frozen",
        ),
        norm="GN",
    ),
    pixel_decoder=L(MSDeformAttnPixelDecoder)(
        input_shape={
            f"res{k + 2}": ShapeSpec(channels=WIDTH, stride=4 * 2**k) for k in range(4)
        },  # nominal strides; a patch-14 tower's true ones are 3.5 .. 28
        transformer_in_features=["res3", "res4", "res5"],
        conv_dim=256,
        mask_dim=256,
        norm="GN",
        transformer_dropout=0.0,
        transformer_nheads=8,
        transformer_dim_feedforward=1024,
        transformer_enc_layers=6,
        common_stride=4,
    ),
    transformer_decoder=L(MultiScaleMaskedTransformerDecoder)(
        in_channels=256,
        hidden_dim=256,
        num_queries=100,
        nheads=8,
        dim_feedforward=2048,
        dec_layers=DEC_LAYERS,
        pre_norm=False,
        mask_dim=256,
        class_head=L(OpenVocabClassHead)(hidden_dim=256, mask_dim=256, text_dim=EMBED,
                                         embed_dim=256),
    ),
    criterion=L(SetCriterion)(
        num_classes=133,
        matcher=L(HungarianMatcher)(
            cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=NUM_POINTS
        ),
        weight_dict=L(make_weight_dict)(
            class_weight=2.0, mask_weight=5.0, dice_weight=5.0, num_aux=DEC_LAYERS
        ),
        eos_coef=0.1,
        num_points=NUM_POINTS,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
    ),
    # every panoptic class (things first), embedded from its cleaned synonyms; thing ids and the
    # seen classes (all, unless seen_dataset names the training set) from the metadata
    vocabulary=L(dataset_vocabulary)(
        dataset_name="coco_2017_val_panoptic_with_sem_seg",
        classes="stuff_classes",
        clean_names=True,
        seen_dataset=None,
        text_encoder=L(TextClassifier)(
            model_name="EVA02-B-16",
            pretrained="merged2b_s8b_b131k",  # the original text tower
            templates="single",  # "a photo of a {}." (ODISE's CLIP-head prompt)
            cache_dir="./output/text_embeddings",
        ),
    ),
    clip_temperature=100.0,
    ensemble_mode="ensemble",
    alpha=0.35,
    beta=0.65,
    object_mask_threshold=0.0,
    overlap_threshold=0.8,
    square_pad=1024,
)


def set_clip_tower(
    model, *, model_name, pretrained, out_indices, width, embed_dim, image_size, text_pretrained
):
    """Point an OVMaskFormer config at another CLIP ViT: the pyramid's channels follow the ViT
    width, the class head follows the CLIP embedding dim, the text tower follows the model, the
    square padding follows the image size (a multiple of the patch)."""
    clip = model.backbone.clip
    clip.model_name = model_name
    clip.pretrained = pretrained
    clip.out_indices = list(out_indices)
    for k in range(4):
        model.pixel_decoder.input_shape[f"res{k + 2}"].channels = width
    model.transformer_decoder.class_head.text_dim = embed_dim
    text = model.vocabulary.text_encoder
    text.model_name = model_name
    text.pretrained = text_pretrained
    model.square_pad = image_size


def set_test_dataset(model, dataloader, *, dataset_name, train_dataset):
    """Evaluate on another panoptic dataset with its own class names (no retraining): the test
    split and the vocabulary (classes and thing ids; seen = the classes matching the training
    set's by synonym, docs/segmentation.md) follow `dataset_name`."""
    from detectron2.data import MetadataCatalog

    dataloader.test.dataset.names = dataset_name
    model.vocabulary.dataset_name = dataset_name
    model.vocabulary.seen_dataset = train_dataset
    model.criterion.num_classes = len(MetadataCatalog.get(dataset_name).stuff_classes)
