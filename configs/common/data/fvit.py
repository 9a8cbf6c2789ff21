# F-ViT detection data (docs/fvit.md §8): train = resize the long side to S * U(0.1, 2.0), random
# crop of min(h, S) x min(w, S), horizontal flip; test = long side S. Images are padded to S x S by
# the model (zero after ImageNet normalisation; `model.backbone.square_pad`). Defaults: OV-COCO at
# S = 640 (B/16), evaluated with AP50 over novel / base / all classes.
from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import (
    build_detection_test_loader,
    get_detection_dataset_dicts,
)

import clipself.data  # noqa: F401  (registers the datasets)
from clipself.data.resumable_loader import build_train_loader
from clipself.data.mappers import DatasetMapper
from clipself.evaluation import OVCOCOEvaluator

IMAGE_SIZE = 640

dataloader = OmegaConf.create()

dataloader.train = L(build_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="ov_coco_train"),  # base annotations only
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeScale)(
                min_scale=0.1, max_scale=2.0, target_height=IMAGE_SIZE, target_width=IMAGE_SIZE
            ),
            L(T.FixedSizeCrop)(crop_size=(IMAGE_SIZE, IMAGE_SIZE), pad=False),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="RGB",
        use_instance_mask=False,
        recompute_boxes=False,
    ),
    total_batch_size=64,  # 8 GPUs x 8 images
    seed="${train.seed}",  # order and augmentations: exact resume, any number of GPUs
    num_workers=4,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="ov_coco_val", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[
            L(T.ResizeScale)(
                min_scale=1.0, max_scale=1.0, target_height=IMAGE_SIZE, target_width=IMAGE_SIZE
            ),
        ],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=4,
)

dataloader.evaluator = L(OVCOCOEvaluator)(
    dataset_name="${..test.dataset.names}", max_dets_per_image=[100, 300, 1000]
)


def set_image_size(dataloader, size):
    """Train scale-jitter target, crop and test resize for square size `size` (pair it with
    `model.backbone.square_pad = size`)."""
    for aug in (dataloader.train.mapper.augmentations[0], dataloader.test.mapper.augmentations[0]):
        aug.target_height = aug.target_width = size
    dataloader.train.mapper.augmentations[1].crop_size = (size, size)
