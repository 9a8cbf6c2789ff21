"""Apply a trained model from Python: any vocabulary, any image.

Example::

    >>> from clipself.engine import OpenVocabPredictor
    >>> predictor = OpenVocabPredictor.from_config(
    ...     "configs/Synthetic/fvit_toy_clipself.py",
    ...     checkpoint="output/synthetic/fvit_toy_clipself/model_final.pth")
    >>> out = predictor("scene.png", vocabulary=["red circle", "blue star"])
    >>> out["instances"].pred_boxes, out["instances"].scores

For F-ViT, panoptic and CAT-Seg configs ``predictor(image)`` returns the model's Detectron2-style
output dict (``instances``; ``panoptic_seg``, ``sem_seg``, ``instances``; ``sem_seg``) in the
pixels of the input image; for CLIPSelf configs :meth:`~OpenVocabPredictor.dense_features` and
:meth:`~OpenVocabPredictor.region_features` give the distilled tower's dense map and region
embeddings. Images are preprocessed like the config's test loader.
"""
import copy
import dataclasses
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from ..data.clip_transforms import resize_longest_pad
from ..structures import (
    Vocabulary,
    build_vocabulary,
    class_synonyms,
    cosine_logits,
    vocabulary_scores,
)
from .checkpointer import Checkpointer
from .config import apply_overrides, resolve_device

__all__ = ["OpenVocabPredictor", "ImageLike", "to_rgb_array"]

logger = logging.getLogger(__name__)

#: a file path, a PIL image (any mode) or an (H, W[, C]) uint8 array (RGB, RGBA or grey)
ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]
VocabularyLike = Union[Vocabulary, Sequence[str]]

#: builders of vocabulary config nodes whose options a custom vocabulary reuses
_VOCABULARY_TARGETS = ("dataset_vocabulary", "build_vocabulary")


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a path, a PIL image of any mode or an uint8 array.

    Raises:
        FileNotFoundError / ValueError: naming the file or the array's shape and dtype.
    """
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if os.path.isdir(path):
            raise ValueError(f"{path} is a folder; give image files (or use .batch on a list)")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image file not found: {path}")
        try:
            return read_image(path, format="RGB")  # EXIF orientation, any mode -> RGB
        except Exception as e:  # PIL raises several types for broken files
            raise ValueError(f"cannot read the image {path} ({type(e).__name__}: {e})") from e
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8 (H, W[, C]); got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"image arrays must be (H, W), (H, W, 3) or (H, W, 4); got {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def _find_vocabulary_node(node, path: str) -> Optional[Tuple[str, DictConfig]]:
    """The first LazyCall node named ``vocabulary`` under ``node`` that builds a vocabulary
    (depth first, in the config's order)."""
    if not isinstance(node, DictConfig):
        return None
    for key, value in node.items_ex(resolve=False):
        if not isinstance(value, DictConfig):
            continue
        target = value.get("_target_", "")
        name = getattr(target, "__name__", str(target).rsplit(".", 1)[-1])
        if key == "vocabulary" and name in _VOCABULARY_TARGETS:
            return f"{path}.{key}", value
        found = _find_vocabulary_node(value, f"{path}.{key}")
        if found is not None:
            return found
    return None


class OpenVocabPredictor:
    """A trained open-vocabulary model with its test preprocessing and text encoder.

    Build it with :meth:`from_config`. The vocabulary can change with every call; vocabularies
    are embedded once with the config's text encoder (and its on-disk cache) and kept.
    """

    def __init__(self, cfg, model: torch.nn.Module, *, device: str):
        """
        Args:
            cfg: the LazyConfig the model was built from (overrides applied).
            model (nn.Module): the model, weights loaded, in eval mode, on ``device``.
            device (str): where inputs go.
        """
        self.cfg = cfg
        self.model = model.eval()
        self.device = device
        self.input_format = getattr(model, "input_format", "RGB")
        self._augmentations = None
        self._text_encoder = None
        self._vocabularies: Dict[Any, Vocabulary] = {}
        self._default_vocabulary = getattr(model, "vocabulary", None)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls,
        config_file: str,
        checkpoint: Optional[str] = None,
        overrides: Sequence[str] = (),
        *,
        device: Optional[str] = None,
        allow_random_init: bool = False,
    ) -> "OpenVocabPredictor":
        """Load a LazyConfig, build its model and load the weights.

        Args:
            config_file (str): a ``configs/**.py`` LazyConfig.
            checkpoint (str): weights (``model_final.pth`` of a ``train_net.py`` run or a
                converted release); default: the config's ``train.init_checkpoint``.
            overrides (list[str]): ``key=value`` overrides, as for ``train_net.py``.
            device (str): "cpu", "cuda", ... (default: ``train.device``, "auto" = GPU if any).
            allow_random_init (bool): accept a detector / segmenter config without weights
                (untrained heads); CLIPSelf configs need none (their towers load
                ``pretrained=``).
        """
        if not os.path.isfile(config_file):
            raise FileNotFoundError(f"config file not found: {config_file}")
        cfg = LazyConfig.load(config_file)
        cfg = apply_overrides(cfg, list(overrides))
        dev = resolve_device(device or cfg.train.get("device", "auto"))
        cfg.train.device = dev
        ckpt = checkpoint or cfg.train.get("init_checkpoint", "") or ""
        model = instantiate(cfg.model)
        # a CLIPSelf model is its towers: their pretrained= weights are enough
        allow_random_init = allow_random_init or bool(cfg.train.get("allow_random_init", False))
        if not ckpt and not getattr(model, "weights_loaded", False) and not allow_random_init:
            raise ValueError(
                f"{config_file}: no weights for {type(model).__name__}: pass checkpoint=PATH (the "
                "model_final.pth of a train_net.py run) or the override "
                "train.init_checkpoint=PATH, or allow_random_init=True to run untrained heads "
                "on purpose"
            )
        if ckpt and "://" not in ckpt and not os.path.isfile(ckpt):
            raise FileNotFoundError(f"checkpoint not found: {ckpt}")
        model.to(dev)
        if ckpt:
            Checkpointer(model).load(ckpt)
        return cls(cfg, model, device=dev)

    # ------------------------------------------------------------------ vocabulary
    @property
    def outputs(self) -> Tuple[str, ...]:
        """What ``predictor(image)`` returns: ``instances`` (F-ViT); ``panoptic_seg``,
        ``sem_seg``, ``instances`` (panoptic); ``sem_seg`` (CAT-Seg); () for CLIPSelf."""
        return tuple(getattr(self.model, "outputs", ()))

    @property
    def vocabulary(self) -> Optional[Vocabulary]:
        """The vocabulary the model classifies against now (None for CLIPSelf models)."""
        return getattr(self.model, "vocabulary", None)

    def _vocabulary_options(self) -> Dict[str, Any]:
        found = (_find_vocabulary_node(self.cfg.model, "model")
                 or _find_vocabulary_node(self.cfg.dataloader, "dataloader"))
        if found is None or found[1].get("text_encoder", None) is None:
            raise ValueError(
                "the config's model has no vocabulary with a text_encoder, so new class names "
                "cannot be embedded; give a Vocabulary instead"
            )
        path, node = found
        if self._text_encoder is None:
            logger.info(f"Embedding vocabularies with {path}.text_encoder")
            self._text_encoder = instantiate(copy.deepcopy(node.text_encoder))
        return {
            "text_encoder": self._text_encoder,
            "per_template": bool(node.get("per_template", False)),
            "templates": node.get("templates", None),
            "background": bool(node.get("background", True)),
            "clean_names": bool(node.get("clean_names", False)),
        }

    def make_vocabulary(
        self,
        class_names: Sequence[str],
        *,
        seen_classes: Optional[Sequence[str]] = None,
        thing_classes: Optional[Sequence[str]] = None,
    ) -> Vocabulary:
        """Embed ``class_names`` like the config's vocabulary (text encoder, templates).

        Args:
            class_names (list[str]): the classes; ``"a, b"`` names are synonyms.
            seen_classes (list[str]): classes seen in training; default: those seen in the
                model's current vocabulary.
            thing_classes (list[str]): thing classes (panoptic); default: those that are things
                in the model's current vocabulary.
        """
        names = tuple(str(n) for n in class_names)
        current = self._default_vocabulary
        if seen_classes is None and current is not None:
            seen_classes = [n for n in names if n in set(current.seen_classes)]
        if thing_classes is None and current is not None:
            thing_classes = [n for n in names if n in set(current.thing_classes)]
        key = (names, tuple(seen_classes or ()), seen_classes is None,
               tuple(thing_classes or ()), thing_classes is None)
        if key not in self._vocabularies:
            opts = self._vocabulary_options()
            clean = opts.pop("clean_names")
            self._vocabularies[key] = build_vocabulary(
                names, synonyms=[class_synonyms(n, clean=clean) for n in names],
                seen_classes=seen_classes, thing_classes=thing_classes, **opts)
        return self._vocabularies[key]

    def set_vocabulary(
        self,
        vocabulary: Optional[VocabularyLike],
        *,
        seen_classes: Optional[Sequence[str]] = None,
        thing_classes: Optional[Sequence[str]] = None,
    ) -> Vocabulary:
        """Classify against ``vocabulary`` from now on (None: the config's own).

        Args:
            vocabulary (Vocabulary or list[str] or None): a :class:`Vocabulary`, class names
                (embedded by :meth:`make_vocabulary`) or None (the config's vocabulary; with
                ``seen_classes`` / ``thing_classes`` its split and things change).
            seen_classes, thing_classes: see :meth:`make_vocabulary`.
        Returns:
            Vocabulary: the vocabulary now in use.
        """
        if not hasattr(self.model, "set_vocabulary"):
            raise TypeError(
                f"{type(self.model).__name__} has no vocabulary (a CLIPSelf config): use "
                "dense_features / region_features"
            )
        if vocabulary is None:
            vocab = self._default_vocabulary
            if seen_classes is not None or thing_classes is not None:
                names = vocab.class_names
                seen = vocab.seen_classes if seen_classes is None else seen_classes
                things = vocab.thing_classes if thing_classes is None else thing_classes
                unknown = sorted((set(seen) | set(things)) - set(names))
                if unknown:
                    raise ValueError(f"classes not in the vocabulary: {unknown[:10]}")
                vocab = dataclasses.replace(
                    vocab, seen_mask=torch.tensor([n in set(seen) for n in names]),
                    thing_ids=[i for i, n in enumerate(names) if n in set(things)])
        elif isinstance(vocabulary, Vocabulary):
            vocab = vocabulary
        else:
            if isinstance(vocabulary, str):
                raise TypeError("vocabulary: give a list of class names, not one string")
            vocab = self.make_vocabulary(vocabulary, seen_classes=seen_classes,
                                         thing_classes=thing_classes)
        if vocab is not self.model.vocabulary:
            self.model.set_vocabulary(vocab)
        return vocab

    # ------------------------------------------------------------------ inputs
    def augmentations(self) -> List[T.Augmentation]:
        """The config's test-time augmentations (``dataloader.test.mapper.augmentations``)."""
        if self._augmentations is None:
            augs = OmegaConf.select(self.cfg, "dataloader.test.mapper.augmentations",
                                    default=None)
            if augs is None:
                logger.warning("the config has no dataloader.test.mapper.augmentations; images "
                               "go to the model unresized")
            self._augmentations = [] if augs is None else list(instantiate(augs))
        return self._augmentations

    def model_input(self, image: ImageLike) -> Tuple[np.ndarray, Dict[str, Any]]:
        """(the RGB array, the model's input dict) of one image, resized like the test loader."""
        rgb = to_rgb_array(image)
        aug_input = T.AugInput(rgb)
        T.AugmentationList(self.augmentations())(aug_input)
        resized = aug_input.image
        if self.input_format == "BGR":
            resized = resized[:, :, ::-1]
        chw = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        return rgb, {"image": chw, "height": rgb.shape[0], "width": rgb.shape[1]}

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def batch(
        self,
        images: Sequence[ImageLike],
        vocabulary: Optional[VocabularyLike] = None,
        *,
        batch_size: int = 4,
        seen_classes: Optional[Sequence[str]] = None,
        thing_classes: Optional[Sequence[str]] = None,
    ) -> List[Dict[str, Any]]:
        """Predict many images, ``batch_size`` at a time.

        Args:
            images (list): paths, PIL images or uint8 arrays.
            vocabulary (Vocabulary or list[str] or None): classify against it (see
                :meth:`set_vocabulary`); None keeps the current one.
            batch_size (int): images per forward.
            seen_classes, thing_classes: see :meth:`make_vocabulary`.
        Returns:
            list[dict]: per image, the model's outputs (``instances`` / ``panoptic_seg`` /
            ``sem_seg``) on the CPU, in the pixels of that image.
        """
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
            raise TypeError("batch() takes a list of images; call the predictor for one")
        if not self.outputs:
            raise TypeError(
                f"{type(self.model).__name__} predicts no detections or segments (a CLIPSelf "
                "config): use dense_features / region_features / classify_regions"
            )
        if vocabulary is not None or seen_classes is not None or thing_classes is not None:
            self.set_vocabulary(vocabulary, seen_classes=seen_classes,
                                thing_classes=thing_classes)
        outputs = []
        for i in range(0, len(images), max(1, int(batch_size))):
            inputs = [self.model_input(im)[1] for im in images[i:i + batch_size]]
            outputs.extend(_to_cpu(o) for o in self.model(inputs))
        return outputs

    def __call__(self, image: ImageLike, vocabulary: Optional[VocabularyLike] = None,
                 **kwargs) -> Dict[str, Any]:
        """Predict one image (see :meth:`batch` for the arguments)."""
        return self.batch([image], vocabulary, **kwargs)[0]

    # ------------------------------------------------------------------ CLIPSelf towers
    def _clipself_input(self, image: ImageLike) -> Tuple[torch.Tensor, float, Tuple[int, int]]:
        if not hasattr(self.model, "evaluated_model"):
            raise TypeError(
                f"dense_features / region_features need a CLIPSelf config; this one builds a "
                f"{type(self.model).__name__} (call the predictor instead)"
            )
        size = OmegaConf.select(self.cfg, "dataloader.test.mapper.image_size", default=None)
        if size is None:
            raise ValueError("the config has no dataloader.test.mapper.image_size")
        rgb = to_rgb_array(image)
        square, scale = resize_longest_pad(Image.fromarray(rgb), int(size))
        return square, scale, rgb.shape[:2]

    @torch.no_grad()
    def dense_features(self, image: ImageLike) -> torch.Tensor:
        """The distilled tower's dense map of one image.

        The image is resized so that its longest side is the config's test ``image_size`` and
        padded to a square (as in the region evaluation); the map is cut to the cells that
        cover the image.

        Returns:
            Tensor: (D, h, w) float32 on the CPU, L2-normalised per location.
        """
        square, scale, (H, W) = self._clipself_input(image)
        dense = self.model.dense_features([square])[0]  # (D, S/p, S/p)
        stride = square.shape[-1] / dense.shape[-1]
        h = max(1, int(np.ceil(H * scale / stride)))
        w = max(1, int(np.ceil(W * scale / stride)))
        return dense[:, :h, :w].cpu()

    @torch.no_grad()
    def region_features(self, image: ImageLike, boxes) -> torch.Tensor:
        """Region embeddings of boxes (RoI pooling of the dense map, as CLIPSelf trains).

        Args:
            image: one image.
            boxes: (R, 4) xyxy boxes in pixels of ``image`` (tensor, array or list).
        Returns:
            Tensor: (R, D) float32 on the CPU, L2-normalised.
        """
        square, scale, _ = self._clipself_input(image)
        b = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4) * scale
        return self.model.region_features([square], [b])[0].cpu()

    @torch.no_grad()
    def classify_regions(self, image: ImageLike, boxes, vocabulary: VocabularyLike, *,
                         probabilities: bool = False) -> torch.Tensor:
        """Classify boxes against a vocabulary with :meth:`region_features`.

        Args:
            image, boxes: see :meth:`region_features`.
            vocabulary (Vocabulary or list[str]): the K classes.
            probabilities (bool): return class probabilities as the text tower was trained to
                give them (:func:`~clipself.structures.vocabulary_scores`: sigmoid with the
                vocabulary's logit scale and bias for SigLIP towers, softmax otherwise;
                docs/open_vocabulary.md §13) instead of cosine similarities. The argmax is the
                same.
        Returns:
            Tensor: (R, K) cosine similarities, or probabilities.
        """
        vocab = vocabulary if isinstance(vocabulary, Vocabulary) else self.make_vocabulary(
            vocabulary)
        cos = cosine_logits(self.region_features(image, boxes), vocab.class_embeddings.float())
        return vocabulary_scores(cos, vocab.logit_scale, vocab.logit_bias) if probabilities else cos


def _to_cpu(output: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for k, v in output.items():
        if k == "panoptic_seg":
            out[k] = (v[0].cpu(), v[1])
        elif hasattr(v, "to"):
            out[k] = v.to("cpu")
        else:
            out[k] = v
    return out
