"""Dataset mapper for CLIPSelf distillation: student image, student boxes, teacher crops."""
import copy
from typing import Optional

import numpy as np
import torch
from detectron2.structures import BoxMode
from torchvision.ops import clip_boxes_to_image

from ..clip_transforms import crop_letterboxed, letterbox, resize_longest_pad
from ..image_io import read_image_checked
from ..regions import sample_grid_boxes, scale_boxes, select_proposals

__all__ = ["CLIPSelfMapper"]


class CLIPSelfMapper:
    """Turn a dataset record into what :class:`clipself.distill.CLIPSelf` trains on.

    Region sources (docs/distillation.md §2-§3):

    * ``"grid"``: a random M x N grid of the image (24 choices), at most ``max_boxes`` cells;
      teacher crop = the cell itself (``crop_scale=1``).
    * ``"proposals"``: the record's ``annotations`` boxes are the proposals (any COCO-format
      file, category ignored): shuffled, first ``max_boxes``, size-filtered, dummy box if none;
      teacher crop = the box enlarged ``crop_scale`` (1.5) times, clipped to the image.
    * ``"mixed"`` (not in the paper): up to ``max_boxes // 2`` proposals plus grid cells up to
      ``max_boxes``, so that both objects and background ("stuff") are distilled.

    Output dict: ``image`` uint8 (3, S, S) (longest side S, black padding right/bottom),
    ``boxes`` (R, 4) xyxy in ``image`` pixels (the tight regions, for the student),
    ``crops`` uint8 (R, 3, C, C) (letterboxed teacher crops), plus ``file_name``, ``image_id``,
    ``height``, ``width``; with ``whole_image_size`` also ``whole_image`` uint8 (3, C', C'), the
    whole image letterboxed like a crop (for the image-level term, docs/distillation.md §10).

    Args:
        image_size (int): S, the student's square input (1024 for B/16, 896 for L/14).
        crop_size (int): C, the teacher's input (224 for B/16, 336 for L/14).
        region_source (str): "grid", "proposals" or "mixed".
        max_split (int): largest grid side (6).
        max_boxes (int): regions per image (20).
        crop_scale (float or None): teacher crop enlargement; default 1.0 (grid), 1.5 (proposals).
        min_size, max_size (float): proposal side limits (8, 1024): area outside
            ``[min_size^2, max_size^2]`` is dropped.
        whole_image_size (int or None): C', the side of ``whole_image`` (the tower's native
            input, i.e. ``crop_size``); None: no whole image (the paper's loss needs none).
    """

    def __init__(
        self,
        *,
        image_size: int = 1024,
        crop_size: int = 224,
        region_source: str = "grid",
        max_split: int = 6,
        max_boxes: int = 20,
        crop_scale: Optional[float] = None,
        min_size: float = 8.0,
        max_size: float = 1024.0,
        whole_image_size: Optional[int] = None,
    ):
        if region_source not in ("grid", "proposals", "mixed"):
            raise ValueError(
                f"region_source must be 'grid', 'proposals' or 'mixed', got {region_source!r}"
            )
        self.image_size = image_size
        self.crop_size = crop_size
        self.region_source = region_source
        self.max_split = max_split
        self.max_boxes = max_boxes
        if crop_scale is None:
            crop_scale = 1.0 if region_source == "grid" else 1.5
        self.crop_scale = crop_scale  # for proposals; grid cells are always cropped as they are
        self.min_size = min_size
        self.max_size = max_size
        self.whole_image_size = whole_image_size

    def _grid(self, width: int, height: int, max_boxes: int) -> torch.Tensor:
        return sample_grid_boxes(width, height, max_split=self.max_split, max_boxes=max_boxes)

    def _regions(self, record: dict, width: int, height: int):
        """Regions (R, 4) in original pixels and their teacher-crop scales (R,)."""
        if self.region_source == "grid":
            cells = self._grid(width, height, self.max_boxes)
            return cells, torch.ones(len(cells))
        if self.region_source == "mixed" and not record.get("annotations"):
            cells = self._grid(width, height, self.max_boxes)
            return cells, torch.ones(len(cells))
        max_props = self.max_boxes if self.region_source == "proposals" else self.max_boxes // 2
        props = self._proposals(record, width, height, max_props)
        scales = torch.full((len(props),), float(self.crop_scale))
        if self.region_source == "mixed":
            cells = self._grid(width, height, self.max_boxes - len(props))
            props = torch.cat([props, cells])
            scales = torch.cat([scales, torch.ones(len(cells))])
        return props, scales

    def _proposals(self, record: dict, width: int, height: int, max_boxes: int) -> torch.Tensor:
        anns = record.get("annotations", [])
        boxes = [
            BoxMode.convert(a["bbox"], a.get("bbox_mode", BoxMode.XYWH_ABS), BoxMode.XYXY_ABS)
            for a in anns
        ]
        boxes = torch.tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        boxes = clip_boxes_to_image(boxes, (height, width))
        return select_proposals(
            boxes, width, height, max_boxes=max_boxes,
            min_size=self.min_size, max_size=self.max_size,
        )

    def __call__(self, record: dict) -> dict:
        record = copy.deepcopy(record)
        image = read_image_checked(record["file_name"])
        width, height = image.size
        regions, scales = self._regions(record, width, height)  # (R, 4) original pixels, (R,)
        crop_boxes = clip_boxes_to_image(scale_boxes(regions, scales[:, None]), (height, width))
        student, scale = resize_longest_pad(image, self.image_size)
        out = {
            "file_name": record["file_name"],
            "image_id": record.get("image_id"),
            "height": height,
            "width": width,
            "image": student,
            "boxes": regions * scale,
            "crops": crop_letterboxed(image, crop_boxes, self.crop_size),
            "crop_boxes": crop_boxes,
        }
        if self.whole_image_size:
            out["whole_image"] = letterbox(image, self.whole_image_size)
        return out
