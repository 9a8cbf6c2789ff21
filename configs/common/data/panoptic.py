# Panoptic data (docs/segmentation.md §7): COCO panoptic train with LSJ (flip, ResizeScale 0.1-2.0,
# crop S x S; the model pads to S x S), evaluated on COCO panoptic val with PQ
# (COCOPanopticEvaluator), mIoU (SemSegEvaluator) and mask AP (InstanceSegEvaluator = COCOEvaluator
# segm that also handles ADE20K's interleaved thing ids). Test images: long side S, padded to a
# square (the ViT's grid), not ODISE's shortest-edge 1024.
from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import (
    build_detection_test_loader,
    get_detection_dataset_dicts,
)
from detectron2.evaluation import COCOPanopticEvaluator, SemSegEvaluator

import clipself.data  # noqa: F401  (registers the datasets)
from clipself.data.resumable_loader import build_train_loader
from clipself.data.mappers import PanopticMapper
from clipself.evaluation import InstanceSegEvaluator

IMAGE_SIZE = 1024

dataloader = OmegaConf.create()

dataloader.train = L(build_train_loader)(
    dataset=L(get_detection_dataset_dicts)(
        names="coco_2017_train_panoptic_with_sem_seg", filter_empty=False
    ),
    mapper=L(PanopticMapper)(
        is_train=True,
        augmentations=L(PanopticMapper.lsj_augmentations)(
            image_size=IMAGE_SIZE, min_scale=0.1, max_scale=2.0
        ),
        image_format="RGB",
    ),
    total_batch_size=64,
    seed="${train.seed}",  # order and augmentations: exact resume, any number of GPUs
    num_workers=4,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(
        names="coco_2017_val_panoptic_with_sem_seg", filter_empty=False
    ),
    mapper=L(PanopticMapper)(
        is_train=False,
        augmentations=[
            L(T.ResizeScale)(
                min_scale=1.0, max_scale=1.0, target_height=IMAGE_SIZE, target_width=IMAGE_SIZE
            )
        ],
        image_format="RGB",
    ),
    num_workers=4,
)

dataloader.evaluator = [
    L(COCOPanopticEvaluator)(dataset_name="${...test.dataset.names}"),
    L(SemSegEvaluator)(dataset_name="${...test.dataset.names}"),
    L(InstanceSegEvaluator)(dataset_name="${...test.dataset.names}", tasks=("segm",)),
]


def set_image_size(dataloader, size):
    """LSJ target/crop size of training and the test resize (pair with `model.square_pad`)."""
    dataloader.train.mapper.augmentations.image_size = size
    aug = dataloader.test.mapper.augmentations[0]
    aug.target_height = aug.target_width = size
