"""Open-vocabulary Mask2Former on a frozen CLIPSelf ViT with the CLIP-score ensemble.

Spec SEGMENTATION §1.8: the frozen ViT's tapped blocks make a simple pyramid (the F-ViT backbone,
:class:`clipself.fvit.FViTBackbone`), a deformable-attention pixel decoder and a masked-attention
transformer decoder predict masks and open-vocabulary class logits ("Pred"); at test, the same
ViT's CLIPSelf dense map is mask-pooled with the predicted masks and classified by the text
embeddings ("CLIP"), and the two are combined by the geometric ensemble of §1.5.
"""
from typing import Collection, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import ImageList
from torch import nn

from clipself.fvit.vocabulary import Vocabulary

from .inference import (
    ENSEMBLE_MODES,
    ensemble_clip_logits,
    ensemble_for_mode,
    instance_inference,
    mask_pool,
    panoptic_inference,
    semantic_inference,
)

__all__ = [
    "OVMaskFormer",
    "class_synonyms",
    "dataset_thing_ids",
    "panoptic_vocabulary",
    "seen_by_synonyms",
]


def dataset_thing_ids(dataset_name: str) -> List[int]:
    """Contiguous ids of the thing classes of a registered panoptic dataset."""
    from detectron2.data import MetadataCatalog

    meta = MetadataCatalog.get(dataset_name)
    table = getattr(meta, "thing_dataset_id_to_contiguous_id", None)
    if table is None:
        raise KeyError(f"dataset {dataset_name!r} has no thing_dataset_id_to_contiguous_id")
    return sorted(int(v) for v in table.values())


_NAME_SUFFIXES = ("-merged", "-other", "-stuff")


def class_synonyms(name: str) -> List[str]:
    """The synonyms of a class name in the ``"a, b, c"`` convention: lower case, stripped,
    COCO panoptic's ``-merged`` / ``-other`` / ``-stuff`` suffixes removed and ``-`` read as a
    space ("wall-other-merged" -> "wall"), duplicates dropped."""
    out: List[str] = []
    for syn in name.split(","):
        syn = syn.strip().lower()
        while syn.endswith(_NAME_SUFFIXES):
            syn = syn[: syn.rindex("-")]
        syn = syn.replace("-", " ").strip()
        if syn and syn not in out:
            out.append(syn)
    return out


def seen_by_synonyms(class_names: Sequence[str], train_names: Sequence[str]) -> List[bool]:
    """Whether each test class was seen in training (spec §1.5): any of its synonyms equals a
    synonym of a training class, e.g. ADE's "car, auto, automobile" vs COCO's "car"."""
    train = {s for n in train_names for s in class_synonyms(n)}
    return [any(s in train for s in class_synonyms(n)) for n in class_names]


def panoptic_vocabulary(
    dataset_name: str,
    *,
    seen_classes: Optional[Sequence[str]] = None,
    seen_dataset: Optional[str] = None,
    embeddings=None,
    text_encoder=None,
) -> Vocabulary:
    """The vocabulary of a registered panoptic dataset: all its classes (``stuff_classes`` in
    Detectron2's panoptic convention, things first). With a ``text_encoder`` each class is
    embedded from its cleaned synonyms (:func:`class_synonyms`; the encoder averages them).

    Seen classes (exponent alpha of the ensemble; the others get beta) are matched by synonym
    against ``seen_classes`` or the classes of ``seen_dataset`` (the training set, e.g.
    ``coco_2017_train_panoptic_with_sem_seg`` when evaluating on ADE20K; its ``seen_classes``
    metadata when set, else its ``stuff_classes``); default: every class.
    """
    from detectron2.data import MetadataCatalog

    from clipself.fvit.vocabulary import build_vocabulary

    if seen_classes is not None and seen_dataset is not None:
        raise ValueError("give seen_classes or seen_dataset, not both")
    if seen_dataset is not None:
        meta = MetadataCatalog.get(seen_dataset)
        seen_classes = list(meta.get("seen_classes", None) or meta.stuff_classes)
    names = list(MetadataCatalog.get(dataset_name).stuff_classes)
    if seen_classes is None:
        seen = names
    else:
        seen = [n for n, s in zip(names, seen_by_synonyms(names, seen_classes)) if s]
    if embeddings is None and text_encoder is not None:
        embeddings = text_encoder([class_synonyms(n) or [n] for n in names], background=True)
    return build_vocabulary(class_names=names, base_classes=seen, embeddings=embeddings,
                            text_encoder=text_encoder)


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
        thing_ids: Collection[int],
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
        pixel_mean: Sequence[float] = (122.7709383, 116.7460125, 104.09373615),
        pixel_std: Sequence[float] = (68.5005327, 66.6321579, 70.32316305),
        square_pad: int = 0,
    ):
        """
        Args:
            backbone: returns ``res2..res5`` (and ``clip_dense`` in eval mode), e.g.
                :class:`clipself.fvit.FViTBackbone` on a frozen CLIPSelf ViT.
            pixel_decoder (MSDeformAttnPixelDecoder), transformer_decoder
                (MultiScaleMaskedTransformerDecoder), criterion (SetCriterion).
            vocabulary (Vocabulary): classes (the embeddings' background row is unused), text
                embeddings and the seen (``base_mask``) split used by the ensemble.
            thing_ids: contiguous ids of thing classes (see :func:`dataset_thing_ids`).
            clip_temperature (float): scale of the CLIP cosine logits (100, spec §1.4).
            ensemble_mode (str): "pred", "clip" or "ensemble" (paper Table 5's three rows).
            alpha, beta (float): CLIP exponents for seen / unseen classes in "ensemble" mode.
            object_mask_threshold, overlap_threshold (float): panoptic merge (spec §1.6).
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
        self.set_vocabulary(vocabulary, thing_ids)
        K = getattr(criterion, "num_classes", vocabulary.num_classes)
        if K != vocabulary.num_classes:
            raise ValueError(
                f"criterion.num_classes={K} but the vocabulary has {vocabulary.num_classes} "
                "classes; set them equal"
            )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def set_vocabulary(self, vocabulary: Vocabulary, thing_ids: Collection[int]) -> None:
        """Segment ``vocabulary``'s classes (test time, no retraining)."""
        K = vocabulary.num_classes
        bad = [i for i in thing_ids if not 0 <= int(i) < K]
        if bad:
            raise ValueError(f"thing ids {bad[:5]} outside the vocabulary's 0..{K - 1}")
        self.vocabulary = vocabulary
        self.thing_ids = sorted(int(i) for i in thing_ids)
        emb = vocabulary.embeddings[:K].to(self.device)
        self.register_buffer("text_embeddings", emb, persistent=False)  # (K, D)
        self.register_buffer("seen_mask", vocabulary.base_mask.to(self.device), persistent=False)

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
        clip_logits = self.clip_temperature * pooled.float() @ self.text_embeddings.float().t()
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
