"""CAT-Seg open-vocabulary semantic segmentation on CLIPSelf dense features (paper Table 4).

docs/segmentation.md §8: the image is resized to ``clip_resolution`` and encoded by a CLIP ViT whose
last block gives the CLIPSelf dense map (value path with the full residual, docs/segmentation.md
§12) and two intermediate blocks give decoder guidance; the cosine cost between the dense map and
the class embeddings of every template is aggregated (:class:`~clipself.modeling.catseg.Aggregator`)
and decoded to per-class logits at 4x the token grid
(:class:`~clipself.modeling.catseg.UpsamplingDecoder`).
Training: per-pixel sigmoid BCE against one-hot targets. Inference: sigmoid scores, optionally
with CAT-Seg's sliding window, resized to each input's ``height`` x ``width``.

Shape shorthand: B images, T classes, P templates, D CLIP embedding dim, W CLIP width,
h/w token grid, H/W image size.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import ImageList
from torch import nn

from ...structures import Vocabulary
from ..backbone.clip_vit import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD
from .cost import cost_volume, gather_classes, scatter_classes, select_classes
from .finetune import apply_finetune_policy

__all__ = ["CATSeg", "sigmoid_bce_loss", "onehot_targets"]

Size = Union[int, Sequence[int]]


def _pair(x: Size) -> Tuple[int, int]:
    return (int(x), int(x)) if isinstance(x, int) else (int(x[0]), int(x[1]))


def onehot_targets(targets: torch.Tensor, num_classes: int, ignore_value: int) -> torch.Tensor:
    """(B, H, W) class ids -> (B, T, H, W) float one-hot; ignored pixels are all zero.

    Raises:
        ValueError: a label other than ``ignore_value`` is outside ``0..num_classes-1``.
    """
    valid = targets != ignore_value
    labels = torch.where(valid, targets, torch.zeros_like(targets))
    if bool(((labels < 0) | (labels >= num_classes)).any()):
        raise ValueError(f"sem_seg labels outside 0..{num_classes - 1} (ignore {ignore_value})")
    onehot = F.one_hot(labels.long(), num_classes) * valid.unsqueeze(-1)  # (B, H, W, T)
    return onehot.permute(0, 3, 1, 2).float()


def sigmoid_bce_loss(
    logits: torch.Tensor, targets: torch.Tensor, ignore_value: int
) -> torch.Tensor:
    """CAT-Seg's loss: per-pixel, per-class sigmoid BCE averaged over all B*T*H*W entries,
    ignored pixels included with all-zero targets (docs/segmentation.md §8).

    Args:
        logits (Tensor): (B, T, H, W) at the target resolution.
        targets (Tensor): (B, H, W) long class ids.
        ignore_value (int): label of ignored pixels.
    Returns:
        Tensor: scalar.
    """
    onehot = onehot_targets(targets, logits.shape[1], ignore_value)
    return F.binary_cross_entropy_with_logits(logits.float(), onehot)


class CATSeg(nn.Module):
    """CAT-Seg cost aggregation on a CLIP(Self) ViT, with a switchable vocabulary."""

    def __init__(
        self,
        *,
        clip: nn.Module,
        aggregator: nn.Module,
        decoder: nn.Module,
        vocabulary: Vocabulary,
        test_vocabulary: Optional[Vocabulary] = None,
        class_budget: int = 256,
        clip_finetune: Optional[str] = "attention",
        guidance_blocks: Optional[Sequence[int]] = None,
        pixel_mean: Sequence[float] = CLIP_PIXEL_MEAN,
        pixel_std: Sequence[float] = CLIP_PIXEL_STD,
        clip_resolution: Optional[Size] = 384,
        ignore_value: int = 255,
        sliding_window: bool = False,
        sliding_window_size: Size = 640,
        sliding_window_stride: Optional[Size] = None,
        size_divisibility: int = 0,
    ):
        """
        Args:
            clip (CLIPViT): the image tower, built with ``out_indices`` = the guidance blocks
                (3 and 7 for ViT-B, 7 and 15 for ViT-L) and its default ``last_block_mode="v"``
                (CLIPSelf dense map); ``freeze`` "none" unless ``clip_finetune`` is "frozen".
            aggregator (Aggregator): cost aggregation.
            decoder (UpsamplingDecoder): upsampling decoder with block guidance.
            vocabulary (Vocabulary): classes and (T, P, D) per-template text embeddings, kept
                in a non-persistent buffer (never in checkpoints); see :meth:`set_vocabulary`.
            test_vocabulary (Vocabulary): the classes segmented in eval mode when they differ
                from the training ones (train on COCO-Stuff, evaluate on ADE20K); default:
                ``vocabulary``.
            class_budget (int): with more classes, keep the top ``class_budget`` per image by
                peak cost; the others get logit -100 (0 disables; 256 in CAT-Seg).
            clip_finetune (str): "attention", "qv" or "frozen" (see
                :func:`~clipself.modeling.catseg.apply_finetune_policy`); None leaves the tower as
                built.
            guidance_blocks (list[int]): tapped blocks for the decoder stages, in stage order
                (shallower first); default: ``clip.out_indices``.
            pixel_mean, pixel_std: input normalisation in 0-255 RGB (CLIP's).
            clip_resolution (int or (h, w)): the (padded) image is resized to this size for
                the CLIP pass (384 for B/16, 336 for L/14); None: use the input size.
            ignore_value (int): ignored label in ``sem_seg``.
            sliding_window (bool): CAT-Seg's sliding-window inference (docs/segmentation.md §10).
            sliding_window_size (int or (h, w)): the image is resized to this size (640) and
                cut into ``clip_resolution`` windows.
            sliding_window_stride (int or (h, w)): default 2/3 of the window (256 for 384).
            size_divisibility (int): pad the batch to multiples of this (with
                ``clip_resolution=None``, at least to the patch size).
        """
        super().__init__()
        self.clip = clip
        self.aggregator = aggregator
        self.decoder = decoder
        self.class_budget = int(class_budget)
        self.ignore_value = int(ignore_value)
        self.clip_resolution = None if clip_resolution is None else _pair(clip_resolution)
        self.size_divisibility = int(size_divisibility)
        self.guidance_blocks = tuple(
            int(i) for i in (clip.out_indices if guidance_blocks is None else guidance_blocks)
        )
        missing = [i for i in self.guidance_blocks if i not in clip.out_indices]
        if missing:
            raise ValueError(f"guidance blocks {missing} are not tapped by the CLIP tower "
                             f"(out_indices={clip.out_indices})")
        self.clip_finetune = clip_finetune
        if clip_finetune is not None:
            if getattr(clip, "freeze", None) == "frozen" and clip_finetune != "frozen":
                raise ValueError(f"clip_finetune={clip_finetune!r} needs a trainable tower: "
                                 "build the CLIPViT with freeze='none'")
            apply_finetune_policy(clip, clip_finetune)

        self.sliding_window = bool(sliding_window)
        self.sliding_window_size = _pair(sliding_window_size)
        if sliding_window_stride is None and self.clip_resolution is not None:
            sliding_window_stride = tuple(k * 2 // 3 for k in self.clip_resolution)
        self.sliding_window_stride = (
            None if sliding_window_stride is None else _pair(sliding_window_stride)
        )
        if self.sliding_window:
            self._check_sliding_window()

        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self._vocabularies: Dict[str, Vocabulary] = {}
        self._set_vocabulary(vocabulary, ("train", "test"))
        if test_vocabulary is not None:
            self._set_vocabulary(test_vocabulary, ("test",))

    @property
    def outputs(self):
        """The keys of an output dict (the open-vocabulary model interface)."""
        return ("sem_seg",)

    @property
    def vocabulary(self) -> Vocabulary:
        """The vocabulary of the current mode (training or eval)."""
        return self._vocabularies["train" if self.training else "test"]

    @property
    def text_embeddings(self) -> torch.Tensor:
        """(T, P, D) text embeddings of the current mode's vocabulary."""
        return self.text_embeddings_train if self.training else self.text_embeddings_test

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def num_classes(self) -> int:
        return self.vocabulary.num_classes

    def _check_sliding_window(self) -> None:
        if self.clip_resolution is None:
            raise ValueError("sliding_window needs clip_resolution (the window size)")
        for s, k, st in zip(self.sliding_window_size, self.clip_resolution,
                            self.sliding_window_stride):
            if s < k or (s - k) % st:
                raise ValueError(
                    f"sliding window: size {self.sliding_window_size} must be window "
                    f"{self.clip_resolution} + a multiple of stride {self.sliding_window_stride}"
                )

    def set_vocabulary(self, vocabulary: Vocabulary) -> None:
        """Segment ``vocabulary``'s classes from now on, in training and eval mode, without
        retraining (a (T, D) vocabulary counts as one template)."""
        self._set_vocabulary(vocabulary, ("train", "test"))

    def _set_vocabulary(self, vocabulary: Vocabulary, modes: Sequence[str]) -> None:
        P = getattr(self.aggregator, "prompt_channels", vocabulary.num_templates)
        if vocabulary.num_templates != P:
            raise ValueError(f"vocabulary has {vocabulary.num_templates} templates; the "
                             f"aggregator expects {P}")
        D = getattr(self.clip, "embed_dim", vocabulary.dim)
        if vocabulary.dim != D:
            raise ValueError(f"text embeddings of dim {vocabulary.dim}; the CLIP tower gives {D}")
        emb = vocabulary.template_embeddings.to(self.device, torch.float32)
        for which in modes:
            self._vocabularies[which] = vocabulary
            self.register_buffer(f"text_embeddings_{which}", emb, persistent=False)  # (T, P, D)

    # ------------------------------------------------------------------ network
    def segment(self, dense: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits from the CLIP outputs.

        Args:
            dense (Tensor): (B, D, h, w) dense CLIP map.
            features (list[Tensor]): (B, W, h, w) guidance block maps, in decoder-stage order.
        Returns:
            Tensor: (B, T, 4h, 4w) logits; classes beyond the budget get -100.
        """
        text = self.text_embeddings  # (T, P, D)
        T = text.shape[0]
        cost = cost_volume(dense, text)  # (B, P, T, h, w)
        index = select_classes(cost, self.class_budget)  # (B, K) or None
        if index is not None:
            cost = gather_classes(cost, index, dim=2)  # (B, P, K, h, w)
            text = gather_classes(text, index, dim=0)  # (B, K, P, D)
        x = self.aggregator(cost, dense, text)  # (B, C, K, h, w)
        logits = self.decoder(x, features)  # (B, K, 4h, 4w)
        return scatter_classes(logits, index, T)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, T, 4h, 4w) logits for the CLIP-resized input."""
        if self.clip_resolution is not None and tuple(images.shape[-2:]) != self.clip_resolution:
            images = F.interpolate(images, size=self.clip_resolution, mode="bilinear",
                                   align_corners=False)
        feats = self.clip(images, dense=True)
        guidance = [feats[f"block{i}"] for i in self.guidance_blocks]
        return self.segment(feats["clip_dense"], guidance)

    # ------------------------------------------------------------------ forward
    def _divisibility(self) -> int:
        div = self.size_divisibility
        if self.clip_resolution is None:
            p = int(getattr(self.clip, "patch_size", 1))
            div = p if div <= 0 else div * p // math.gcd(div, p)
        return div

    def _normalize(self, image: torch.Tensor) -> torch.Tensor:
        return (image.to(self.device).float() - self.pixel_mean) / self.pixel_std

    def forward(self, batched_inputs: List[Dict]):
        """
        Args:
            batched_inputs (list[dict]): ``image`` (uint8 (3, H, W) RGB), ``sem_seg`` (long
                (H, W), training), optional ``height``/``width`` (output size).
        Returns:
            dict ``{"loss_sem_seg": Tensor}`` in training; otherwise list of
            ``{"sem_seg": (T, height, width) scores in [0, 1]}``.
        """
        if not self.training and self.sliding_window:
            return self.sliding_window_inference(batched_inputs)
        div = self._divisibility()
        images = ImageList.from_tensors([self._normalize(x["image"]) for x in batched_inputs], div)
        logits = self.predict(images.tensor)  # (B, T, h', w')
        if self.training:
            targets = ImageList.from_tensors(
                [x["sem_seg"].to(self.device) for x in batched_inputs], div,
                pad_value=self.ignore_value,
            ).tensor  # (B, Hp, Wp)
            logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear",
                                   align_corners=False)
            return {"loss_sem_seg": sigmoid_bce_loss(logits, targets, self.ignore_value)}
        probs = F.interpolate(logits.sigmoid(), size=images.tensor.shape[-2:], mode="bilinear",
                              align_corners=False)  # (B, T, Hp, Wp)
        results = []
        for x, p, size in zip(batched_inputs, probs, images.image_sizes):
            h, w = x.get("height", size[0]), x.get("width", size[1])
            results.append({"sem_seg": sem_seg_postprocess(p, size, h, w)})
        return results

    @torch.no_grad()
    def sliding_window_inference(self, batched_inputs: List[Dict]) -> List[Dict]:
        """CAT-Seg's test-time sliding window (docs/segmentation.md §10): each image is resized to
        ``sliding_window_size``, cut into ``clip_resolution`` windows at
        ``sliding_window_stride``; the window scores (averaged where windows overlap) and the
        scores of the whole image resized to one window are averaged."""
        self._check_sliding_window()
        S, k, st = self.sliding_window_size, self.clip_resolution, self.sliding_window_stride
        imgs = torch.stack([
            F.interpolate(self._normalize(x["image"])[None], size=S, mode="bilinear",
                          align_corners=False)[0]
            for x in batched_inputs
        ])  # (B, 3, S, S)
        B = imgs.shape[0]
        crops = F.unfold(imgs, k, stride=st)  # (B, 3*kh*kw, L)
        L = crops.shape[-1]
        crops = crops.reshape(B, 3, k[0], k[1], L).permute(0, 4, 1, 2, 3).flatten(0, 1)
        whole = F.interpolate(imgs, size=k, mode="bilinear", align_corners=False)
        logits = self.predict(torch.cat([crops, whole]))  # (B*L + B, T, h', w')
        probs = F.interpolate(logits, size=k, mode="bilinear", align_corners=False).sigmoid()
        T = probs.shape[1]
        local = probs[: B * L].reshape(B, L, T * k[0] * k[1]).transpose(1, 2)  # (B, T*kh*kw, L)
        cover = F.fold(F.unfold(imgs.new_ones(1, 1, *S), k, stride=st), S, k, stride=st)
        local = F.fold(local, S, k, stride=st) / cover  # (B, T, S, S)
        whole = F.interpolate(probs[B * L:], size=S, mode="bilinear", align_corners=False)
        out = (local + whole) / 2
        results = []
        for x, p in zip(batched_inputs, out):
            h = x.get("height", x["image"].shape[-2])
            w = x.get("width", x["image"].shape[-1])
            results.append({"sem_seg": sem_seg_postprocess(p, S, h, w)})
        return results
