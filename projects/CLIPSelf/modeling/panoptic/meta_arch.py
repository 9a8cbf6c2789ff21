"""Open-vocabulary Mask2Former on a frozen CLIPSelf ViT with the CLIP-score ensemble.

docs/segmentation.md §2: the frozen ViT's tapped blocks make a simple pyramid (the F-ViT backbone,
:class:`clipself.modeling.FViTBackbone`), a deformable-attention pixel decoder and a masked-
attention transformer decoder predict masks and open-vocabulary class logits ("Pred"); at test, the
same ViT's CLIPSelf dense map is mask-pooled with the predicted masks and classified by the text
embeddings ("CLIP"), and the two are combined by the geometric ensemble of docs/segmentation.md §6.
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import ImageList
from torch import nn

from ...structures import Vocabulary, cosine_logits
from ..backbone.clip_vit import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD
from ..open_vocab.ensemble import ENSEMBLE_MODES, ensemble_clip_logits, ensemble_for_mode
from .inference import instance_inference, mask_pool, panoptic_inference, semantic_inference

__all__ = ["OVMaskFormer"]


class OVMaskFormer(nn.Module):
    """Mask2Former-style open-vocabulary panoptic / semantic / instance segmenter."""

    def __init__(
        self,
        *,
        backbone: nn.Module,
        pixel_decoder: nn.Module,
        transformer_decoder: nn.Module,
        criterion: nn.Module,
        vocabulary: Vocabulary,
        clip_temperature: float = 100.0,
        ensemble_mode: str = "ensemble",
        alpha: float = 0.35,
        beta: float = 0.65,
        object_mask_threshold: float = 0.0,
        overlap_threshold: float = 0.8,
        semantic_on: bool = True,
        panoptic_on: bool = True,
        instance_on: bool = True,
        test_topk_per_image: int = 100,
        pixel_mean: Sequence[float] = CLIP_PIXEL_MEAN,
        pixel_std: Sequence[float] = CLIP_PIXEL_STD,
        square_pad: int = 0,
    ):
        """
        Args:
            backbone: returns ``res2..res5`` (and ``clip_dense`` in eval mode), e.g.
                :class:`clipself.modeling.fvit.FViTBackbone` on a frozen CLIPSelf ViT.
            pixel_decoder (MSDeformAttnPixelDecoder), transformer_decoder
                (MultiScaleMaskedTransformerDecoder), criterion (SetCriterion).
            vocabulary (Vocabulary): classes, text embeddings, the seen split used by the
                ensemble (``seen_mask``) and the thing classes (``thing_ids``).
            clip_temperature (float): scale of the CLIP cosine logits (100, docs/segmentation.md
            §5).
            ensemble_mode (str): "pred", "clip" or "ensemble" (paper Table 5's three rows).
            alpha, beta (float): CLIP exponents for seen / unseen classes in "ensemble" mode.
            object_mask_threshold, overlap_threshold (float): panoptic merge (docs/segmentation.md
            §3.5).
            semantic_on, panoptic_on, instance_on (bool): which outputs inference returns.
            test_topk_per_image (int): instances kept per image.
            pixel_mean, pixel_std: input normalisation (CLIP's, for the CLIP ViT).
            square_pad (int): pad inputs to this square size (0: to the backbone's divisibility).
        """
        super().__init__()
        if ensemble_mode not in ENSEMBLE_MODES:
            raise ValueError(f"ensemble_mode={ensemble_mode!r}; choose from {ENSEMBLE_MODES}")
        self.backbone = backbone
        self.pixel_decoder = pixel_decoder
        self.transformer_decoder = transformer_decoder
        self.criterion = criterion
        self.clip_temperature = float(clip_temperature)
        self.ensemble_mode = ensemble_mode
        self.alpha, self.beta = float(alpha), float(beta)
        self.object_mask_threshold = object_mask_threshold
        self.overlap_threshold = overlap_threshold
        self.semantic_on, self.panoptic_on, self.instance_on = semantic_on, panoptic_on, instance_on
        self.test_topk_per_image = test_topk_per_image
        self.square_pad = int(square_pad)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.set_vocabulary(vocabulary)
        K = getattr(criterion, "num_classes", vocabulary.num_classes)
        if K != vocabulary.num_classes:
            raise ValueError(
                f"criterion.num_classes={K} but the vocabulary has {vocabulary.num_classes} "
                "classes; set them equal"
            )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def outputs(self):
        """The keys of an output dict (the open-vocabulary model interface)."""
        flags = (("panoptic_seg", self.panoptic_on), ("sem_seg", self.semantic_on),
                 ("instances", self.instance_on))
        return tuple(k for k, on in flags if on)

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    @property
    def thing_ids(self) -> List[int]:
        """Contiguous ids of the vocabulary's thing classes."""
        return list(self._vocabulary.thing_ids)

    def set_vocabulary(self, vocabulary: Vocabulary) -> None:
        """Segment ``vocabulary``'s classes (test time, no retraining)."""
        self._vocabulary = vocabulary
        emb = vocabulary.class_embeddings.to(self.device)
        self.register_buffer("text_embeddings", emb, persistent=False)  # (K, D)
        self.register_buffer("seen_mask", vocabulary.seen_mask.to(self.device), persistent=False)

    # ------------------------------------------------------------------ helpers
    def _images(self, batched_inputs: List[Dict]) -> ImageList:
        images = [(x["image"].to(self.device).float() - self.pixel_mean) / self.pixel_std
                  for x in batched_inputs]
        div = getattr(self.backbone, "size_divisibility", 0)
        return ImageList.from_tensors(images, div, padding_constraints={
            "size_divisibility": div, "square_size": self.square_pad})

    @staticmethod
    def _targets(batched_inputs: List[Dict], images: ImageList) -> List[Dict[str, torch.Tensor]]:
        """GT masks padded to the batch tensor (predictions cover the padded image)."""
        H, W = images.tensor.shape[-2:]
        out = []
        for x in batched_inputs:
            inst = x["instances"].to(images.tensor.device)
            masks = inst.gt_masks
            masks = masks.tensor if hasattr(masks, "tensor") else masks
            padded = masks.new_zeros((masks.shape[0], H, W))
            padded[:, : masks.shape[1], : masks.shape[2]] = masks
            out.append({"labels": inst.gt_classes, "masks": padded})
        return out

    def _class_log_probs(self, logits: torch.Tensor, masks: torch.Tensor,
                         dense: Optional[torch.Tensor]) -> torch.Tensor:
        """(Q, K+1) log-probabilities of one image after the ensemble of ``ensemble_mode``."""
        alpha, beta = ensemble_for_mode(self.ensemble_mode, self.alpha, self.beta)
        if (alpha == 0 and beta == 0) or dense is None:
            return F.log_softmax(logits.float(), dim=-1)
        pooled = mask_pool(dense, masks.sigmoid())  # (Q, D)
        clip_logits = cosine_logits(pooled.float(), self.text_embeddings.float(),
                                    self.clip_temperature)  # (Q, K)
        return ensemble_clip_logits(logits, clip_logits, self.seen_mask, alpha, beta)

    # ------------------------------------------------------------------ forward
    def forward(self, batched_inputs: List[Dict]):
        images = self._images(batched_inputs)
        features = self.backbone(images.tensor)
        mask_features, _, multi_scale = self.pixel_decoder.forward_features(
            {k: v for k, v in features.items() if k != "clip_dense"})
        outputs = self.transformer_decoder(multi_scale, mask_features, self.text_embeddings)
        if self.training:
            return self.criterion(outputs, self._targets(batched_inputs, images))
        return self.inference(outputs, features.get("clip_dense"), images, batched_inputs)

    @torch.no_grad()
    def inference(self, outputs, dense, images: ImageList, batched_inputs: List[Dict]):
        pad_h, pad_w = images.tensor.shape[-2:]
        masks = F.interpolate(outputs["pred_masks"].float(), size=(pad_h, pad_w),
                              mode="bilinear", align_corners=False)  # (B, Q, Hp, Wp)
        K = self.vocabulary.num_classes
        results = []
        for i, (x, size) in enumerate(zip(batched_inputs, images.image_sizes)):
            logp = self._class_log_probs(outputs["pred_logits"][i], masks[i],
                                         None if dense is None else dense[i])
            h, w = x.get("height", size[0]), x.get("width", size[1])
            m = sem_seg_postprocess(masks[i], size, h, w)  # (Q, h, w) logits
            res = {}
            if self.semantic_on:
                res["sem_seg"] = semantic_inference(logp, m)
            if self.panoptic_on:
                res["panoptic_seg"] = panoptic_inference(
                    logp, m, num_classes=K, thing_ids=self.thing_ids,
                    object_mask_threshold=self.object_mask_threshold,
                    overlap_threshold=self.overlap_threshold)
            if self.instance_on:
                res["instances"] = instance_inference(
                    logp, m, num_classes=K,
                    thing_ids=self.thing_ids if self.panoptic_on else None,
                    topk=self.test_topk_per_image)
            results.append(res)
        return results
