"""Dataset mapper for the open-vocabulary panoptic head (docs/segmentation.md §7).

Turns a Mask2Former-style panoptic record (``file_name``, ``pan_seg_file_name``, optional
``sem_seg_file_name``, ``segments_info`` with contiguous ``category_id`` and ``iscrowd``) into
the Detectron2 model input: ``image`` plus, in training, ``sem_seg`` and
``instances(gt_classes, gt_masks)`` with one mask per non-crowd segment.

The panoptic PNG is kept in its RGB encoding while the geometric transforms run, so that it
goes through exactly the same code path (PIL nearest resize, numpy crop/flip/pad) as a uint8
semantic map; segment ids are decoded (``id = R + 256 G + 256^2 B``) afterwards.
"""
import copy
from typing import List, Optional

import numpy as np
import torch
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BitMasks, Instances
from PIL import Image

from ..image_io import named_file_errors, read_image_array

__all__ = ["PanopticMapper", "rgb_to_id"]


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Decode a COCO panoptic RGB map (H, W, 3) into segment ids (H, W) int64 (0 = void)."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def _pad_to_divisible(array: np.ndarray, divisor: int, value) -> np.ndarray:
    """Pad the first two axes (H, W) of ``array`` on the bottom / right to multiples of divisor."""
    h, w = array.shape[:2]
    pad_h, pad_w = (-h) % divisor, (-w) % divisor
    if pad_h == 0 and pad_w == 0:
        return array
    pad = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad, mode="constant", constant_values=value)


class PanopticMapper:
    """Map a panoptic dataset record to the panoptic model's input (``COCOPanopticDatasetMapper``).

    Output dict: ``image`` uint8 (3, H, W) in ``image_format``; ``height``, ``width`` (the
    original size, for post-processing); ``image_id``; ``file_name``. In training also:

    * ``sem_seg``: int64 (H, W), contiguous class ids, ``ignore_label`` on void pixels. Read
      from ``sem_seg_file_name`` when the record has one, otherwise derived from the panoptic map
      (every segment, crowd ones included, labelled with its ``category_id``).
    * ``instances``: :class:`Instances` of size (H, W) with ``gt_classes`` int64 (N,) and
      ``gt_masks`` :class:`BitMasks` (N, H, W): one per non-crowd segment of ``segments_info``
      (in that order) whose mask is not empty after the transforms.

    At test time only the image is mapped (evaluators read the ground truth from disk).

    The LSJ crop (:meth:`lsj_augmentations`) does not pad: images are at most S x S, and padding
    to S x S (or to a multiple of the patch size) is left to the model, which pads the
    normalised image with zeros through ``ImageList.from_tensors``. ``size_divisibility`` pads
    here instead if wanted (image with 128, ``sem_seg`` with ``ignore_label``, masks with 0).

    Args:
        is_train (bool): map ground truth (True) or only the image (False).
        augmentations (list[T.Augmentation]): geometric augmentations, applied in order.
        image_format (str): format for :func:`detectron2.data.detection_utils.read_image`.
        ignore_label (int): value of void pixels in ``sem_seg``.
        size_divisibility (int): if > 0, pad the outputs bottom/right to multiples of it.
    """

    def __init__(
        self,
        *,
        is_train: bool,
        augmentations: List[T.Augmentation],
        image_format: str = "RGB",
        ignore_label: int = 255,
        size_divisibility: int = -1,
    ):
        self.is_train = is_train
        self.augmentations = T.AugmentationList(list(augmentations))
        self.image_format = image_format
        self.ignore_label = ignore_label
        self.size_divisibility = size_divisibility

    @classmethod
    def lsj_augmentations(
        cls, image_size: int = 1024, min_scale: float = 0.1, max_scale: float = 2.0
    ) -> List[T.Augmentation]:
        """Large-scale jitter for training (docs/segmentation.md §7): flip, ``ResizeScale``, crop
        (no pad).

        Args:
            image_size (int): S, the target square side.
            min_scale, max_scale (float): range of the resize factor relative to S x S.
        Returns:
            list[T.Augmentation]: ``[RandomFlip, ResizeScale, FixedSizeCrop(pad=False)]``.
        """
        return [
            T.RandomFlip(horizontal=True),
            T.ResizeScale(
                min_scale=min_scale, max_scale=max_scale,
                target_height=image_size, target_width=image_size,
            ),
            T.FixedSizeCrop(crop_size=(image_size, image_size), pad=False),
        ]

    @classmethod
    def test_augmentations(cls, min_size: int = 1024, max_size: int = 2560) -> List[T.Augmentation]:
        """Test-time resize (docs/segmentation.md §7): ``[ResizeShortestEdge(min_size,
        max_size)]``."""
        return [T.ResizeShortestEdge(min_size, max_size)]

    def _read_sem_seg(self, file_name: str) -> np.ndarray:
        sem_seg = read_image_array(file_name)
        if sem_seg.ndim == 3:
            sem_seg = sem_seg[..., 0]
        return sem_seg

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image_array(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        height, width = image.shape[:2]

        sem_seg: Optional[np.ndarray] = None
        if self.is_train and dataset_dict.get("sem_seg_file_name"):
            sem_seg = self._read_sem_seg(dataset_dict["sem_seg_file_name"])
            if sem_seg.shape != (height, width):
                raise ValueError(
                    f"{dataset_dict['sem_seg_file_name']} is {sem_seg.shape[::-1]} but the "
                    f"image {dataset_dict['file_name']} is {(width, height)}"
                )
        aug_input = T.AugInput(image, sem_seg=sem_seg)
        transforms = self.augmentations(aug_input)
        image = aug_input.image

        out = {
            "file_name": dataset_dict["file_name"],
            "image_id": dataset_dict.get("image_id"),
            "height": height,
            "width": width,
        }
        if self.size_divisibility > 0:
            image = _pad_to_divisible(image, self.size_divisibility, 128)
        out["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if not self.is_train:
            return out

        with named_file_errors(dataset_dict["pan_seg_file_name"], "panoptic PNG"):
            pan_rgb = np.asarray(Image.open(dataset_dict["pan_seg_file_name"]).convert("RGB"))
        if pan_rgb.shape[:2] != (height, width):
            raise ValueError(
                f"{dataset_dict['pan_seg_file_name']} is {pan_rgb.shape[1::-1]} but the image "
                f"{dataset_dict['file_name']} is {(width, height)}"
            )
        pan_rgb = transforms.apply_segmentation(np.ascontiguousarray(pan_rgb))
        if self.size_divisibility > 0:
            pan_rgb = _pad_to_divisible(pan_rgb, self.size_divisibility, 0)
        pan_ids = rgb_to_id(pan_rgb)  # (H, W), 0 = void
        segments = dataset_dict["segments_info"]

        if sem_seg is None:
            sem = np.full(pan_ids.shape, self.ignore_label, dtype=np.int64)
            for s in segments:
                sem[pan_ids == s["id"]] = s["category_id"]
        else:
            sem = aug_input.sem_seg.astype(np.int64)
            if self.size_divisibility > 0:
                sem = _pad_to_divisible(sem, self.size_divisibility, self.ignore_label)
        out["sem_seg"] = torch.as_tensor(np.ascontiguousarray(sem))

        classes, masks = [], []
        for s in segments:
            if s.get("iscrowd", 0):
                continue
            mask = pan_ids == s["id"]
            if not mask.any():  # cropped away (or absent from the PNG)
                continue
            classes.append(s["category_id"])
            masks.append(mask)
        h, w = pan_ids.shape
        instances = Instances((h, w))
        instances.gt_classes = torch.tensor(classes, dtype=torch.int64)
        if masks:
            instances.gt_masks = BitMasks(torch.from_numpy(np.stack(masks)))
        else:
            instances.gt_masks = BitMasks(torch.zeros((0, h, w), dtype=torch.bool))
        out["instances"] = instances
        return out
