"""F-ViT: a two-stage open-vocabulary detector on a frozen CLIP ViT (docs/fvit.md §1)."""
import math

from detectron2.modeling import GeneralizedRCNN

from ...structures import Vocabulary

__all__ = ["FViT"]


class FViT(GeneralizedRCNN):
    """``GeneralizedRCNN`` with an :class:`FViTFPN` backbone and :class:`FViTROIHeads`.

    Checks at construction that anchors and poolers use the backbone's true (possibly
    fractional) strides, and exposes :meth:`set_vocabulary` for test-time class lists.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        K = self.roi_heads.box_predictor.num_classes
        if self.roi_heads.num_classes != K:
            raise ValueError(
                f"roi_heads.num_classes={self.roi_heads.num_classes} but the vocabulary has {K} "
                "classes; set them equal"
            )
        strides = self.backbone.strides_float
        rpn = self.proposal_generator
        want = [strides[f] for f in rpn.in_features]
        have = [float(s) for s in rpn.anchor_generator.strides]
        if not all(math.isclose(a, b) for a, b in zip(want, have)) or len(want) != len(have):
            raise ValueError(
                f"anchor strides {have} differ from the backbone's {want} for {rpn.in_features}"
            )
        heads = self.roi_heads
        poolers = [(heads.box_in_features, heads.box_pooler)]
        if getattr(heads, "mask_on", False):
            poolers.append((heads.mask_in_features, heads.mask_pooler))
        for feats, pooler in poolers:
            want = [1.0 / strides[f] for f in feats]
            have = [p.spatial_scale for p in pooler.level_poolers]
            if not all(math.isclose(a, b) for a, b in zip(want, have)):
                raise ValueError(
                    f"pooler scales {have} differ from 1/stride of {feats}: {want}; "
                    "use FloatStrideROIPooler(strides=...)"
                )
        clip_stride = getattr(heads, "clip_stride", None)
        if clip_stride is not None and not math.isclose(clip_stride, strides["clip_dense"]):
            raise ValueError(
                f"roi_heads.clip_stride={clip_stride} but the CLIP map has stride "
                f"{strides['clip_dense']}"
            )

    @property
    def outputs(self):
        """The keys of an output dict (the open-vocabulary model interface)."""
        return ("instances",)

    @property
    def vocabulary(self) -> Vocabulary:
        return self.roi_heads.box_predictor.vocabulary

    def set_vocabulary(self, vocabulary: Vocabulary) -> None:
        """Detect ``vocabulary``'s classes from now on (test time; no retraining)."""
        self.roi_heads.num_classes = vocabulary.num_classes
        self.roi_heads.box_predictor.set_vocabulary(vocabulary)
