# F-ViT on OV-LVIS with EVA02-CLIP-B/16 refined by CLIPSelf on patches (Table 3 row 7,
# mask APr 25.3): 1024 x 1024 inputs, 48 epochs (LR x0.1 at 32 and 44), class-agnostic mask
# head, normalised RPN convs, background weight 0.9, rare classes novel; evaluated with the LVIS
# API (segm APr, 300 detections per image).
from detectron2.config import LazyCall as L
from detectron2.evaluation import LVISEvaluator
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import MaskRCNNConvUpsampleHead

from clipself.modeling.fvit import FloatStrideROIPooler

from ..common.data.fvit import set_image_size
from ..common.schedules import warmup_multistep
from .fvit_eva02_b16_ovcoco_clipself_patches_3ep import dataloader, model, optimizer, train

IMAGE_SIZE = 1024
model.backbone.bottom_up.clip.pretrained = "checkpoints/eva_vitb16_lvis_clipself_patches.pt"
model.backbone.square_pad = IMAGE_SIZE
model.proposal_generator.head.norm = "SyncBN"
model.roi_heads.num_classes = 1203
model.roi_heads.proposal_matcher.allow_low_quality_matches = True
model.roi_heads.mask_in_features = ["p2", "p3", "p4", "p5"]
model.roi_heads.mask_pooler = L(FloatStrideROIPooler)(
    output_size=14,
    strides="${..box_pooler.strides}",
    sampling_ratio=0,
    pooler_type="ROIAlignV2",
)
model.roi_heads.mask_head = L(MaskRCNNConvUpsampleHead)(
    input_shape=ShapeSpec(channels=256, width=14, height=14),
    num_classes=1,  # class-agnostic
    conv_dims=[256, 256, 256, 256, 256],  # 4 convs + the deconv
    conv_norm="SyncBN",
)
predictor = model.roi_heads.box_predictor
predictor.vocabulary.dataset_name = "ov_lvis_val"  # 1203 classes; rare = novel
predictor.background_weight = 0.9
predictor.clip_ensemble = {"temperature": 50.0, "alpha": 0.1, "beta": 0.6}
predictor.test_score_thresh = 1e-4
predictor.test_nms_thresh = 0.5
predictor.test_topk_per_image = 300

dataloader.train.dataset.names = "ov_lvis_train"  # base (f + c) annotations only
dataloader.train.mapper.use_instance_mask = True
dataloader.train.mapper.recompute_boxes = True
dataloader.test.dataset.names = "ov_lvis_val"
set_image_size(dataloader, IMAGE_SIZE)
dataloader.evaluator = L(LVISEvaluator)(
    dataset_name="${..test.dataset.names}", max_dets_per_image=300
)

EPOCH_ITERS = 99388 // 64 + 1  # LVIS v1 train images with base annotations / batch
train.max_iter = 48 * EPOCH_ITERS
lr_multiplier = warmup_multistep(
    max_iter=train.max_iter, milestones=[32 * EPOCH_ITERS, 44 * EPOCH_ITERS], warmup_iters=250
)
train.eval_period = 4 * EPOCH_ITERS
train.checkpointer.period = 4 * EPOCH_ITERS
train.output_dir = "./output/FViT/fvit_eva02_b16_ovlvis_clipself_patches_4x"
