# F-ViT (docs/fvit.md §1): frozen EVA02-CLIP-B/16 taps [3, 5, 7, 11] -> upsample adapters ->
# FPN (P2-P6) -> RPN (2 convs) -> 4conv+2fc box head -> open-vocabulary cosine predictor with the
# CLIP-score ensemble at test. Defaults = OV-COCO B/16; variants change the tower, taps, strides,
# vocabulary.
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.proposal_generator import RPN
from detectron2.modeling.roi_heads import FastRCNNConvFCHead

from clipself.data import dataset_vocabulary
from clipself.modeling import (
    CLIPViT,
    FViTBackbone,
    FViTFPN,
    TextClassifier,
    pyramid_taps,
    tower_geometry,
)
from clipself.modeling.fvit import (
    FloatStrideROIPooler,
    FViT,
    FViTROIHeads,
    NormRPNHead,
    OpenVocabOutputLayers,
)

IMAGE_SIZE = 640  # train = test square size (OV-COCO B/16)
PATCH = 16
STRIDES = [PATCH / 4, PATCH / 2, PATCH, PATCH * 2, PATCH * 4]  # p2..p6 (3.5 .. 56 for patch 14)

model = L(FViT)(
    backbone=L(FViTFPN)(
        bottom_up=L(FViTBackbone)(
            clip=L(CLIPViT)(
                model_name="EVA02-B-16",
                pretrained="checkpoints/eva_vitb16_coco_clipself_patches.pt",
                out_indices=[3, 5, 7, 11],
                freeze="frozen",
            ),
            norm="SyncBN",
        ),
        in_features=["res2", "res3", "res4", "res5"],
        out_channels=256,
        norm="SyncBN",
        top_block=L(LastLevelMaxPool)(),
        square_pad=IMAGE_SIZE,
    ),
    proposal_generator=L(RPN)(
        in_features=["p2", "p3", "p4", "p5", "p6"],
        head=L(NormRPNHead)(in_channels=256, num_anchors=3, conv_dims=[256, 256], norm=""),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[[8 * s] for s in STRIDES],  # 32..512 (28..448 for patch 14)
            aspect_ratios=[0.5, 1.0, 2.0],
            strides=STRIDES,
            offset=0.0,
        ),
        anchor_matcher=L(Matcher)(
            thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True
        ),
        box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(2000, 2000),  # per level (docs/fvit.md §4)
        post_nms_topk=(1000, 1000),
        nms_thresh=0.7,
        box_reg_loss_type="smooth_l1",
        smooth_l1_beta=0.0,  # L1
    ),
    roi_heads=L(FViTROIHeads)(
        num_classes=65,
        batch_size_per_image=512,
        positive_fraction=0.25,
        proposal_matcher=L(Matcher)(
            thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False
        ),
        box_in_features=["p2", "p3", "p4", "p5"],
        box_pooler=L(FloatStrideROIPooler)(
            output_size=7, strides=STRIDES[:4], sampling_ratio=0, pooler_type="ROIAlignV2"
        ),
        box_head=L(FastRCNNConvFCHead)(
            input_shape=ShapeSpec(channels=256, height=7, width=7),
            conv_dims=[256, 256, 256, 256],
            fc_dims=[512, 512],  # the CLIP embedding dim D (768 for L/14)
            conv_norm="SyncBN",
        ),
        box_predictor=L(OpenVocabOutputLayers)(
            input_shape=ShapeSpec(channels=512),  # = box_head.fc_dims[-1]
            box2box_transform=L(Box2BoxTransform)(weights=(10, 10, 5, 5)),
            vocabulary=L(dataset_vocabulary)(
                dataset_name="ov_coco_val",  # 65 classes; base/novel from its metadata
                embeddings=None,  # or the authors' embeddings .pt (docs/fvit.md §10)
                text_encoder=L(TextClassifier)(
                    model_name="EVA02-B-16",  # the original (frozen) text tower
                    pretrained="merged2b_s8b_b131k",  # open_clip tag = EVA02_CLIP_B_psz16_s8B
                    templates="vild",
                    cache_dir="./output/text_embeddings",
                ),
            ),
            temperature=50.0,
            background_weight=0.6,
            clip_ensemble={"temperature": 75.0, "alpha": 0.1, "beta": 0.8},
            test_score_thresh=0.01,
            test_nms_thresh=0.4,
            test_topk_per_image=100,
        ),
        clip_stride=PATCH,
        train_on_pred_boxes=False,
    ),
    pixel_mean=[123.675, 116.28, 103.53],  # ImageNet statistics, not CLIP's (docs/fvit.md §8)
    pixel_std=[58.395, 57.12, 57.375],
    input_format="RGB",
)


def set_clip_tower(
    model, *, model_name, pretrained, out_indices, patch, embed_dim, image_size, text_pretrained
):
    """Point an F-ViT config at another CLIP ViT: every stride-dependent field follows `patch`
    (anchors 8 x stride, pooler strides, CLIP-map stride), the box head width follows the CLIP
    embedding dim, the text tower follows the model."""
    strides = [patch / 4, patch / 2, patch, patch * 2, patch * 4]
    clip = model.backbone.bottom_up.clip
    clip.model_name = model_name
    clip.pretrained = pretrained
    clip.out_indices = list(out_indices)
    model.backbone.square_pad = image_size
    model.proposal_generator.anchor_generator.sizes = [[8 * s] for s in strides]
    model.proposal_generator.anchor_generator.strides = strides
    model.roi_heads.box_pooler.strides = strides[:4]
    if "mask_pooler" in model.roi_heads:
        model.roi_heads.mask_pooler.strides = strides[:4]
    model.roi_heads.clip_stride = patch
    model.roi_heads.box_head.fc_dims = [embed_dim, embed_dim]
    model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=embed_dim)
    text = model.roi_heads.box_predictor.vocabulary.text_encoder
    text.model_name = model_name
    text.pretrained = text_pretrained


def set_clip_tower_of(model, *, model_name, pretrained, image_size, text_pretrained):
    """`set_clip_tower` with the taps, patch and embedding dim read from the tower's open_clip
    config (`tower_geometry`, `pyramid_taps`: [3, 5, 7, 11] for 12 blocks, [6, 10, 14, 23] for
    24), for any ViT-family tower (SigLIP / SigLIP2, PE-Core, OpenCLIP, EVA02)."""
    g = tower_geometry(model_name)
    if g.kind != "transformer":
        raise ValueError(f"F-ViT taps the blocks of a ViT; {model_name!r} is a {g.family} CNN")
    set_clip_tower(
        model, model_name=model_name, pretrained=pretrained, out_indices=pyramid_taps(g.depth),
        patch=int(g.stride), embed_dim=g.embed_dim, image_size=image_size,
        text_pretrained=text_pretrained,
    )
