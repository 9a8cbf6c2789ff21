"""Dataset mapper for region recognition (docs/region_evaluation.md §1): panoptic segments ->
regions to classify."""
import copy
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.structures import BoxMode
from PIL import Image
from torchvision.ops import clip_boxes_to_image, masks_to_boxes

from ..clip_transforms import crop_letterboxed, letterbox, resize_longest_pad
from ..image_io import named_file_errors, read_image_checked
from ..regions import scale_boxes

__all__ = ["RegionEvalMapper", "mask_to_box", "resize_masks_longest"]


def mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """Tight xyxy boxes of binary masks with the *inclusive* max index (docs/region_evaluation.md
    §2).

    Args:
        masks (Tensor): (R, H, W) bool.
    Returns:
        Tensor (R, 4) float: ``(min x, min y, max x, max y)``; zeros for empty masks.
    """
    # torchvision's masks_to_boxes fails on an empty mask; those get zeros here
    boxes = torch.zeros(masks.shape[0], 4, device=masks.device)
    nonempty = masks.flatten(1).any(1)
    if nonempty.any():
        boxes[nonempty] = masks_to_boxes(masks[nonempty]).float()
    return boxes


def resize_masks_longest(masks: torch.Tensor, size: int) -> torch.Tensor:
    """Masks to the dense-feature grid, aligned with the student image (docs/region_evaluation.md
    §2).

    Bicubic resize of the float masks so that the longest side is ``size``, zero padding
    right/bottom to ``size x size``, then ``> 0`` (a liberal threshold, as the authors do).

    Args:
        masks (Tensor): (R, H, W) bool.
    Returns:
        Tensor (R, size, size) bool.
    """
    r, h, w = masks.shape
    scale = size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    out = torch.zeros(r, size, size, dtype=torch.bool)
    if r == 0:
        return out
    resized = F.interpolate(
        masks[:, None].float(), size=(new_h, new_w), mode="bicubic", align_corners=False
    )[:, 0]
    out[:, :new_h, :new_w] = resized > 0
    return out


class RegionEvalMapper:
    """Turn a panoptic record into regions for :class:`RegionRecognitionEvaluator`.

    For the first ``max_regions`` segments of the image (after dropping boxes with area
    ``< min_area`` or ``> max_area``):

    * thing: RoI = the annotation's tight box; teacher crop = that box x ``thing_crop_scale``;
    * stuff: RoI = crop = the tight box of the mask (inclusive max index);
    * mask at feature resolution (:func:`resize_masks_longest`).

    Output dict: ``image`` uint8 (3, S, S); ``boxes`` (R, 4) xyxy in image pixels; ``masks``
    bool (R, m, m) with m = S / patch; ``crops`` uint8 (R, 3, C, C); ``labels`` (R,) contiguous
    class ids (over ``stuff_classes``, i.e. all classes); ``isthing`` bool (R,). With
    ``whole_image_size``, for the image-level zero-shot metric (docs/region_evaluation.md §8):
    ``whole_image`` uint8 (3, C', C'), the whole image letterboxed like a crop, and
    ``image_labels`` (T,) the sorted contiguous ids of the thing classes of *all* the image's
    segments (before the ``max_regions`` cut and the size filters).

    Args:
        image_size (int): S (1024 B/16, 896 L/14).
        crop_size (int): C (224 B/16, 336 L/14).
        mask_size (int): m = S / patch (64 for both).
        max_regions (int): first N segments of an image (100).
        min_area, max_area (float): box-area limits (64, 1024^2).
        thing_crop_scale (float): enlargement of thing crops (1.5).
        whole_image_size (int or None): C', the side of ``whole_image`` (the tower's native
            input, i.e. ``crop_size``); None: no image-level outputs.
    """

    def __init__(
        self,
        *,
        image_size: int = 1024,
        crop_size: int = 224,
        mask_size: int = 64,
        max_regions: int = 100,
        min_area: float = 64.0,
        max_area: float = 1024.0**2,
        thing_crop_scale: float = 1.5,
        whole_image_size: Optional[int] = None,
    ):
        self.image_size = image_size
        self.crop_size = crop_size
        self.mask_size = mask_size
        self.max_regions = max_regions
        self.min_area = min_area
        self.max_area = max_area
        self.thing_crop_scale = thing_crop_scale
        self.whole_image_size = whole_image_size

    def __call__(self, record: dict) -> dict:
        from panopticapi.utils import rgb2id

        record = copy.deepcopy(record)
        image = read_image_checked(record["file_name"])
        width, height = image.size
        with named_file_errors(record["pan_seg_file_name"], "panoptic PNG"):
            pan = rgb2id(np.asarray(Image.open(record["pan_seg_file_name"]).convert("RGB")))
        if pan.shape != (height, width):
            raise ValueError(
                f"{record['pan_seg_file_name']} is {pan.shape[::-1]} but the image is "
                f"{(width, height)}"
            )
        segments = record["segments_info"][: self.max_regions]
        ids = torch.tensor([s["id"] for s in segments], dtype=torch.int64)
        masks = torch.from_numpy(pan.astype(np.int64))[None] == ids[:, None, None]  # (R, H, W)
        isthing = torch.tensor([bool(s.get("isthing", True)) for s in segments], dtype=torch.bool)
        labels = torch.tensor([s["category_id"] for s in segments], dtype=torch.int64)

        thing_boxes = torch.tensor(
            [
                BoxMode.convert(s["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
                if "bbox" in s
                else [0.0, 0.0, 0.0, 0.0]
                for s in segments
            ],
            dtype=torch.float32,
        ).reshape(-1, 4)
        mask_boxes = mask_to_box(masks)
        no_bbox = torch.tensor(["bbox" not in s for s in segments], dtype=torch.bool)
        use_mask_box = ~isthing | no_bbox
        rois = torch.where(use_mask_box[:, None], mask_boxes, thing_boxes)  # (R, 4)
        crop_boxes = torch.where(
            use_mask_box[:, None], mask_boxes, scale_boxes(thing_boxes, self.thing_crop_scale)
        )
        crop_boxes = clip_boxes_to_image(crop_boxes, (height, width))

        area = (rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1])
        keep = (area >= self.min_area) & (area <= self.max_area) & masks.flatten(1).any(1)

        student, scale = resize_longest_pad(image, self.image_size)
        out = {
            "file_name": record["file_name"],
            "image_id": record.get("image_id"),
            "height": height,
            "width": width,
            "image": student,
            "boxes": rois[keep] * scale,
            "masks": resize_masks_longest(masks[keep], self.mask_size),
            "crops": crop_letterboxed(image, crop_boxes[keep], self.crop_size),
            "labels": labels[keep],
            "isthing": isthing[keep],
        }
        if self.whole_image_size:
            out["whole_image"] = letterbox(image, self.whole_image_size)
            things = {s["category_id"] for s in record["segments_info"] if s.get("isthing", True)}
            out["image_labels"] = torch.tensor(sorted(things), dtype=torch.int64)
        return out
