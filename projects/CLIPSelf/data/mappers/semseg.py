"""Dataset mapper for semantic segmentation training (CAT-Seg, docs/segmentation.md §9).

Reads ``file_name`` and ``sem_seg_file_name`` (8-bit PNG or 16-bit TIFF label maps), applies the
augmentations to both, and returns ``image`` uint8 (3, H, W) and ``sem_seg`` int64 (H, W). Classes
listed in a record's ``sem_seg_ignore_ids`` become ``ignore_label`` before the transforms (an
open-vocabulary training split whose novel classes are unannotated).
"""
import copy
from typing import List, Sequence

import numpy as np
import torch
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from PIL import Image

from ..image_io import named_file_errors, read_image_array

__all__ = ["SemSegMapper", "remap_ignored"]


def remap_ignored(label: np.ndarray, ignore_ids: Sequence[int], ignore_label: int) -> np.ndarray:
    """``label`` (H, W) with every value in ``ignore_ids`` replaced by ``ignore_label``."""
    if len(ignore_ids) == 0:
        return label
    out = label.copy()
    out[np.isin(label, np.asarray(list(ignore_ids)))] = ignore_label
    return out


class SemSegMapper:
    """Map a semantic-segmentation record to the model input.

    Args:
        is_train (bool): map the label map too (True) or only the image (False; evaluators read
            the ground truth from disk).
        augmentations (list[T.Augmentation]): applied to image and labels in order.
        image_format (str): format for :func:`detectron2.data.detection_utils.read_image`.
        ignore_label (int): label of ignored pixels (255; 65535 for 16-bit datasets).
    """

    def __init__(
        self,
        *,
        is_train: bool,
        augmentations: List[T.Augmentation],
        image_format: str = "RGB",
        ignore_label: int = 255,
    ):
        self.is_train = is_train
        self.augmentations = T.AugmentationList(list(augmentations))
        self.image_format = image_format
        self.ignore_label = ignore_label

    @classmethod
    def catseg_augmentations(cls, image_size: int = 384, crop_size: int = 384,
                             single_category_max_area: float = 1.0, ignore_label: int = 255,
                             color: bool = True) -> List[T.Augmentation]:
        """CAT-Seg training augmentations (docs/segmentation.md §9): shortest edge ``image_size``,
        a category area constrained crop ``crop_size``^2, photometric jitter, horizontal flip."""
        augs = [
            T.ResizeShortestEdge(image_size, max_size=4 * image_size,
                                 sample_style="choice"),
            T.RandomCrop_CategoryAreaConstraint("absolute", (crop_size, crop_size),
                                                single_category_max_area, ignore_label),
        ]
        if color:
            augs += [T.RandomBrightness(0.875, 1.125), T.RandomContrast(0.5, 1.5),
                     T.RandomSaturation(0.5, 1.5)]
        return augs + [T.RandomFlip(horizontal=True)]

    @staticmethod
    def read_label(file_name: str) -> np.ndarray:
        """A label map as int64 (H, W): 8-bit PNGs and 16-bit TIFFs (ADE-847, PC-459)."""
        with named_file_errors(file_name, "label map"), Image.open(file_name) as im:
            label = np.asarray(im)
        if label.ndim == 3:
            label = label[..., 0]
        return label.astype(np.int64)

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image_array(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        height, width = image.shape[:2]
        sem_seg = None
        if self.is_train:
            if not dataset_dict.get("sem_seg_file_name"):
                raise ValueError(f"{dataset_dict['file_name']}: training record without "
                                 "sem_seg_file_name")
            sem_seg = self.read_label(dataset_dict["sem_seg_file_name"])
            if sem_seg.shape != (height, width):
                raise ValueError(f"{dataset_dict['sem_seg_file_name']} is {sem_seg.shape[::-1]} "
                                 f"but the image is {(width, height)}")
            sem_seg = remap_ignored(sem_seg, dataset_dict.get("sem_seg_ignore_ids", ()),
                                    self.ignore_label)
            # transforms run on a compact dtype (PIL resize of int64 is not supported)
            sem_seg = sem_seg.astype(np.uint16 if sem_seg.max() > 255 else np.uint8)
        aug_input = T.AugInput(image, sem_seg=sem_seg)
        self.augmentations(aug_input)
        out = {
            "file_name": dataset_dict["file_name"],
            "image_id": dataset_dict.get("image_id"),
            "height": height,
            "width": width,
            "image": torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1))),
        }
        if self.is_train:
            out["sem_seg"] = torch.as_tensor(aug_input.sem_seg.astype(np.int64))
        return out
