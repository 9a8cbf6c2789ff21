# Detection data loaders (Detectron2 DatasetMapper, with errors naming the file; the resumable
# train loader). Change dataset names / sizes in variants.
from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import (
    build_detection_test_loader,
    get_detection_dataset_dicts,
)
from detectron2.evaluation import COCOEvaluator

import clipself.data  # noqa: F401  (registers the datasets)
from clipself.data.resumable_loader import build_train_loader
from clipself.data.mappers import DatasetMapper

dataloader = OmegaConf.create()

dataloader.train = L(build_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="ov_coco_train"),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(
                short_edge_length=(640, 672, 704, 736, 768, 800),
                sample_style="choice",
                max_size=1333,
            ),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="RGB",
        use_instance_mask=False,
    ),
    total_batch_size=16,
    seed="${train.seed}",  # order and augmentations: exact resume, any number of GPUs
    num_workers=4,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="ov_coco_val", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333)],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=4,
)

dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}")
