# Semantic-segmentation data (docs/segmentation.md §9): COCO-Stuff-171 training with CAT-Seg's
# augmentations (shortest edge 384, category-area-constrained 384 x 384 crop, photometric jitter,
# flip), batch 4; test: shortest edge 640, evaluated by SemSegEvaluator (mIoU, mAcc, pAcc; the
# VOC-21 "with background" split by VOCbEvaluator), chosen from the test dataset's metadata.
from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import (
    build_detection_test_loader,
    get_detection_dataset_dicts,
)

import clipself.data  # noqa: F401  (registers the datasets)
from clipself.data.resumable_loader import build_train_loader
from clipself.data.mappers import SemSegMapper
from clipself.evaluation import evaluator_for_dataset

dataloader = OmegaConf.create()

dataloader.train = L(build_train_loader)(
    dataset=L(get_detection_dataset_dicts)(
        names="coco_2017_train_stuff_sem_seg", filter_empty=False
    ),
    mapper=L(SemSegMapper)(
        is_train=True,
        augmentations=L(SemSegMapper.catseg_augmentations)(
            image_size=384, crop_size=384, single_category_max_area=1.0, ignore_label=255
        ),
        image_format="RGB",
        ignore_label=255,
    ),
    total_batch_size=4,
    seed="${train.seed}",  # order and augmentations: exact resume, any number of GPUs
    num_workers=4,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="ade20k_sem_seg_val", filter_empty=False),
    mapper=L(SemSegMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=640, max_size=2560)],
        image_format="RGB",
    ),
    num_workers=4,
)

dataloader.evaluator = L(evaluator_for_dataset)(dataset_name="${..test.dataset.names}")
