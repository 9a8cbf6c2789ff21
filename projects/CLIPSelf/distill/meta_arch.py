"""The CLIPSelf meta-architecture (docs/distillation.md §1): a trainable student, a frozen teacher,
cosine loss.

Shape shorthand: B images, R regions (all images), S student input side, C teacher crop side
(= the tower's native input side, also that of the whole image of the image-level term), D
embedding dim, h x w the dense map.
"""
import copy
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.utils.events import get_event_storage
from torch import nn

from ..modeling.backbone.clip_vit import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD
from ..modeling.backbone.tower_base import CLIPTowerBase
from ..modeling.dense_ops import pool_boxes, pool_masks
from .ensemble import ensemble_state_dicts
from .teacher_cache import TeacherCache, crop_keys

__all__ = ["CLIPSelf", "cosine_distillation_loss"]


def cosine_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``1 - mean_i cos(student_i, teacher_i)`` over R regions.

    Args:
        student (Tensor): (R, D) region features (any norm).
        teacher (Tensor): (R, D) teacher embeddings (any norm).
    Returns:
        Tensor: scalar loss (0 when R = 0, with a graph to ``student``).
    """
    if student.shape[0] == 0:
        return student.sum() * 0.0
    cos = F.cosine_similarity(student, teacher.to(student.dtype), dim=-1)  # (R,)
    return 1.0 - cos.mean()


def _check_mask_grid(masks: List[torch.Tensor], grid: tuple, image_side: int) -> None:
    """The region masks must come at the dense grid (docs/region_evaluation.md §2); say which
    config key sets it when they do not (e.g. a CNN tower, stride 32, under a ViT config)."""
    for m in masks:
        if m.numel() and tuple(m.shape[-2:]) != grid:
            raise ValueError(
                f"region masks are {tuple(m.shape[-2:])} but this tower's dense map of a "
                f"{image_side} px image is {grid}: set dataloader.test.mapper.mask_size="
                f"{grid[-1]} (image side / tower stride)"
            )


class CLIPSelf(nn.Module):
    """Student = a trainable CLIP tower (:func:`~clipself.modeling.CLIPTower`: a ViT or a CNN),
    teacher = frozen copy of the same weights.

    Training (``model(batched_inputs)`` with records from :class:`CLIPSelfMapper`): the student's
    dense map is RoI-pooled over ``boxes`` and pulled towards the teacher's embeddings of ``crops``
    (cosine loss, returned as ``{"loss_clipself": ...}``).

    Optional image-level term (not in the paper; docs/distillation.md §10): with
    ``global_loss_weight > 0`` the student's ``encode_image`` of the whole image (``whole_image``
    of the records, letterboxed by the mapper to the native side C), and of the teacher crops when
    ``global_on_crops``, is pulled towards the frozen teacher's embedding of the same input
    (cosine), returned as ``"loss_global"``. With weight 0 (the default) nothing more is run.

    Inference (records from :class:`RegionEvalMapper`): returns, per image, the L2-normalised
    region features ``{"boxes": (R, D), "masks": (R, D), "crops": (R, D)}`` of the *evaluated*
    model: ``alpha * student + (1 - alpha) * teacher`` (docs/distillation.md §7; ``alpha=1`` is the
    student), plus ``"image": (D,)``, its embedding of the whole image, when the records carry
    ``whole_image`` (docs/region_evaluation.md §8).

    Args:
        student (CLIPViT or CLIPConvTower): the model being refined (freezing set by its own
            options).
        teacher (CLIPViT or CLIPConvTower): the same architecture and weights; frozen here.
        alpha (float): weight-ensembling factor for evaluation and export (0.7 B/16, 0.95 L/14).
        loss_weight (float): multiplier of the cosine loss.
        global_loss_weight (float): multiplier of the image-level term; 0 = the paper's loss.
        global_on_crops (bool): the image-level term also covers the teacher crops (the student's
            ``encode_image`` of each crop vs the teacher's embedding already computed for it).
        teacher_cache (TeacherCache or None): reuse the teacher's crop embeddings across
            epochs (region proposals; docs/performance.md §2); bound to the teacher's weights
            at the first training step, after any checkpoint was loaded. Needs ``crop_boxes``
            in the records (``CLIPSelfMapper`` gives them).
        pixel_mean, pixel_std (tuple[float]): input normalisation in 0-255 units (CLIP's).
    """

    def __init__(
        self,
        *,
        student: CLIPTowerBase,
        teacher: CLIPTowerBase,
        alpha: float = 1.0,
        loss_weight: float = 1.0,
        global_loss_weight: float = 0.0,
        global_on_crops: bool = False,
        teacher_cache: Optional[TeacherCache] = None,
        pixel_mean: Sequence[float] = CLIP_PIXEL_MEAN,
        pixel_std: Sequence[float] = CLIP_PIXEL_STD,
    ):
        super().__init__()
        self.student = student
        self.teacher = teacher.eval().requires_grad_(False)
        self.alpha = alpha
        self._cache = {}  # not a submodule: never saved, rebuilt per evaluation round
        self.loss_weight = loss_weight
        if global_loss_weight < 0:
            raise ValueError(f"global_loss_weight must be >= 0, got {global_loss_weight}")
        self.global_loss_weight = global_loss_weight
        self.global_on_crops = global_on_crops
        self.teacher_cache = teacher_cache
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def weights_loaded(self) -> bool:
        """Whether the towers were built from a checkpoint (``pretrained=``): region
        evaluation of CLIPSelf needs no other weights, so ``train_net.py --eval-only`` accepts it
        without ``train.init_checkpoint``."""
        return getattr(self.student, "load_report", None) is not None

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # the teacher never leaves eval mode
        if mode:
            self._cache.clear()  # weights will change: rebuild the ensemble when evaluating
        return self

    def _normalize(self, images: List[torch.Tensor]) -> torch.Tensor:
        x = torch.stack([im.to(self.device, non_blocking=True) for im in images]).float()
        return (x - self.pixel_mean) / self.pixel_std  # (N, 3, H, W)

    def forward(self, batched_inputs: List[Dict]):
        if not self.training:
            return self.inference(batched_inputs)
        images = self._normalize([x["image"] for x in batched_inputs])  # (B, 3, S, S)
        boxes = [x["boxes"].to(self.device).float() for x in batched_inputs]  # B x (R_i, 4)
        raw_crops = [c for x in batched_inputs for c in x["crops"]]  # R x (3, C, C) uint8

        dense = self.student.dense_features(images)  # (B, D, h, w)
        stride = images.shape[-1] / dense.shape[-1]
        student = pool_boxes(dense, boxes, stride)  # (R, D)
        teacher = self.teacher_embeddings(batched_inputs, raw_crops)  # (R, D)
        loss = cosine_distillation_loss(student, teacher)
        try:
            get_event_storage().put_scalar("clipself/num_regions", float(len(student)))
        except AssertionError:  # called outside a trainer (no event storage)
            pass
        losses = {"loss_clipself": loss * self.loss_weight}
        if self.global_loss_weight > 0:  # weight 0: no extra forward (the paper's loss)
            crops = self._normalize(raw_crops) if self.global_on_crops else None
            losses["loss_global"] = self.global_loss_weight * self._global_loss(
                batched_inputs, crops, teacher
            )
        return losses

    @torch.no_grad()
    def teacher_embeddings(self, batched_inputs: List[Dict], raw_crops: List[torch.Tensor]
                           ) -> torch.Tensor:
        """The frozen teacher's ``encode_image`` of the crops, (R, D); with a teacher cache only
        crops never seen before are embedded (docs/performance.md §2).

        Args:
            raw_crops (list[Tensor]): R uint8 (3, C, C) crops, in record order.
        """
        cache = self.teacher_cache
        if cache is None:
            return self.teacher.encode_image(self._normalize(raw_crops))
        if any("crop_boxes" not in x for x in batched_inputs):
            raise ValueError(
                "model.teacher_cache needs crop_boxes in the training records (CLIPSelfMapper "
                "gives them); set model.teacher_cache=None for another mapper"
            )
        if cache.namespace is None:
            cache.bind(self.teacher)
        images, keys = [], []
        for x in batched_inputs:
            k = crop_keys(str(x["file_name"]), x["crop_boxes"], x["crops"].shape[-1])
            keys += k
            images += [str(x["file_name"])] * len(k)
        out = cache.embed(images, keys, lambda idx: self.teacher.encode_image(
            self._normalize([raw_crops[i] for i in idx])))
        try:
            storage = get_event_storage()
            storage.put_scalar("clipself/teacher_cache_hit_rate",
                               cache.hits / max(cache.hits + cache.misses, 1))
        except AssertionError:  # called outside a trainer (no event storage)
            pass
        return out.to(self.device)

    def _global_loss(self, batched_inputs: List[Dict], crops: torch.Tensor,
                     teacher_crops: torch.Tensor) -> torch.Tensor:
        """The image-level term (docs/distillation.md §10): ``1 - mean cos`` between the
        student's and the frozen teacher's ``encode_image`` of the whole images; with
        ``global_on_crops`` the mean of that and the same over the teacher crops.

        Args:
            crops (Tensor): (R, 3, C, C) normalised teacher crops.
            teacher_crops (Tensor): (R, D) the teacher's embeddings of ``crops``.
        """
        if "whole_image" not in batched_inputs[0]:
            raise ValueError(
                "model.global_loss_weight > 0 needs the whole image in the training records: "
                "set dataloader.train.mapper.whole_image_size to the tower's native input side "
                "(the crop size)"
            )
        whole = self._normalize([x["whole_image"] for x in batched_inputs])  # (B, 3, C, C)
        student = self.student.encode_image(whole)  # (B, D)
        with torch.no_grad():
            teacher = self.teacher.encode_image(whole)  # (B, D)
        loss = cosine_distillation_loss(student, teacher)
        if self.global_on_crops:
            student_crops = self.student.encode_image(crops)  # (R, D)
            loss = 0.5 * (loss + cosine_distillation_loss(student_crops, teacher_crops))
        return loss

    def evaluated_model(self) -> CLIPTowerBase:
        """The model evaluated and exported: ``alpha * student + (1 - alpha) * teacher``.

        Built once per evaluation round (the cache is dropped when training resumes).
        """
        if self.alpha == 1.0:
            return self.student
        if "evaluated" not in self._cache:
            model = copy.deepcopy(self.student).eval().requires_grad_(False)
            model.load_state_dict(
                ensemble_state_dicts(
                    self.student.state_dict(), self.teacher.state_dict(), self.alpha
                )
            )
            self._cache["evaluated"] = model
        return self._cache["evaluated"]

    @torch.no_grad()
    def dense_features(self, images: List[torch.Tensor]) -> torch.Tensor:
        """Dense map of the evaluated model.

        Args:
            images (list[Tensor]): B uint8 (3, S, S) images (the mapper's padded squares).
        Returns:
            Tensor: (B, D, S/p, S/p) float32, L2-normalised per location.
        """
        return self.evaluated_model().dense_features(self._normalize(images))

    @torch.no_grad()
    def region_features(self, images: List[torch.Tensor], boxes: List[torch.Tensor]
                        ) -> List[torch.Tensor]:
        """RoI features of boxes on the evaluated model's dense map, L2-normalised.

        Args:
            images (list[Tensor]): B uint8 (3, S, S) images.
            boxes (list[Tensor]): B entries of (R_i, 4) xyxy boxes in pixels of those images.
        Returns:
            list[Tensor]: B entries of (R_i, D).
        """
        dense = self.dense_features(images)  # (B, D, h, w)
        stride = images[0].shape[-1] / dense.shape[-1]
        boxes = [b.to(self.device).float() for b in boxes]
        feats = F.normalize(pool_boxes(dense, boxes, stride), dim=-1)  # (R, D)
        return list(feats.split([len(b) for b in boxes]))

    @torch.no_grad()
    def inference(self, batched_inputs: List[Dict]) -> List[Dict[str, torch.Tensor]]:
        model = self.evaluated_model()
        images = self._normalize([x["image"] for x in batched_inputs])  # (B, 3, S, S)
        dense = model.dense_features(images)  # (B, D, h, w)
        stride = images.shape[-1] / dense.shape[-1]
        boxes = [x["boxes"].to(self.device).float() for x in batched_inputs]  # B x (R_i, 4)
        masks = [x["masks"].to(self.device) for x in batched_inputs]  # B x (R_i, h, w)
        _check_mask_grid(masks, tuple(dense.shape[-2:]), images.shape[-1])
        box_feats = F.normalize(pool_boxes(dense, boxes, stride), dim=-1)  # (R, D)
        mask_feats = F.normalize(pool_masks(dense, masks), dim=-1)  # (R, D)
        sizes = [len(b) for b in boxes]
        if sum(sizes) == 0:  # every region of the batch was filtered out: nothing to crop
            crop_feats = box_feats.new_zeros(0, box_feats.shape[-1])
        else:
            crops = self._normalize([c for x in batched_inputs for c in x["crops"]])
            crop_feats = F.normalize(model.encode_image(crops), dim=-1)  # (R, D)
        outputs = [
            {"boxes": b, "masks": m, "crops": c}
            for b, m, c in zip(
                box_feats.split(sizes), mask_feats.split(sizes), crop_feats.split(sizes)
            )
        ]
        if "whole_image" in batched_inputs[0]:  # docs/region_evaluation.md §8
            whole = self._normalize([x["whole_image"] for x in batched_inputs])  # (B, 3, C, C)
            image_feats = F.normalize(model.encode_image(whole), dim=-1)  # (B, D)
            for out, f in zip(outputs, image_feats):
                out["image"] = f  # (D,)
        return outputs
