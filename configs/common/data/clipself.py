# Data for CLIPSelf: distillation images (COCO train2017 grid patches by default) and the
# region-recognition evaluation on COCO panoptic val2017 (paper Table 2, docs/region_evaluation.md
# §1).
from omegaconf import OmegaConf

from detectron2.config import LazyCall as L
from detectron2.data import (
    build_detection_test_loader,
    get_detection_dataset_dicts,
)

import clipself.data  # noqa: F401  (registers the datasets)
from clipself.data.resumable_loader import build_train_loader
from clipself.data.mappers import CLIPSelfMapper, RegionEvalMapper
from clipself.data import dataset_vocabulary
from clipself.evaluation import RegionRecognitionEvaluator
from clipself.modeling import TextClassifier

dataloader = OmegaConf.create()

dataloader.train = L(build_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_train", filter_empty=False),
    mapper=L(CLIPSelfMapper)(
        image_size=1024,  # student: longest side 1024, padded to a square (64 x 64 tokens)
        crop_size=224,  # teacher crops, letterboxed
        region_source="grid",  # 24 grid choices, <= 20 cells per image
        max_boxes=20,
        whole_image_size=None,  # the image-level term's input (docs/distillation.md §10): off
    ),
    total_batch_size=16,  # 8 GPUs x 2 images
    seed="${train.seed}",  # order and augmentations: exact resume, any number of GPUs
    aspect_ratio_grouping=False,
    num_workers=4,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(
        names="coco_2017_val_panoptic_with_sem_seg", filter_empty=False
    ),
    mapper=L(RegionEvalMapper)(
        image_size="${...train.mapper.image_size}",
        crop_size="${...train.mapper.crop_size}",
        mask_size=64,  # image_size / patch
        # the whole image at the tower's native side, for image_mAP (docs/region_evaluation.md §8)
        whole_image_size="${.crop_size}",
    ),
    num_workers=4,
)

# Text embeddings of all 133 panoptic classes from the original (frozen) text tower, with the
# 63-template ensemble (docs/region_evaluation.md §1, docs/fvit.md §10), cached on disk.
dataloader.evaluator = L(RegionRecognitionEvaluator)(
    dataset_name="${..test.dataset.names}",
    vocabulary=L(dataset_vocabulary)(
        dataset_name="${..dataset_name}",
        classes="stuff_classes",
        background=False,
        text_encoder=L(TextClassifier)(
            model_name="${model.teacher.model_name}",
            pretrained="${model.teacher.pretrained}",
            templates="vild",
            cache_dir="./output/text_embeddings",
        ),
    ),
)
