"""RoI pooling on pyramids with fractional strides (patch-14 F-ViT: 3.5, 7, 14, 28)."""
from typing import Sequence

from detectron2.modeling.poolers import ROIPooler

__all__ = ["FloatStrideROIPooler"]


class FloatStrideROIPooler(ROIPooler):
    """Detectron2 ``ROIPooler`` whose levels may have any stride (docs/fvit.md §5, §7).

    Level assignment is Detectron2's (``floor(canonical_level + log2(sqrt(area) /
    canonical_box_size))``, clamped), computed on the nominal levels ``first_level ..``; only the
    pooling scale of each level is the true ``1 / stride``. With canonical 224 / level 4 this is
    mmdet's ``clamp(floor(log2(sqrt(wh) / 56)), 0, 3)`` for every patch size.

    Own subclass: Detectron2's ``ROIPooler`` requires power-of-two strides (``log2`` of each
    scale must be an integer), and a /14 or /8 ViT's pyramid has strides like 3.5 or 7.
    """

    def __init__(
        self,
        *,
        output_size,
        strides: Sequence[float],
        sampling_ratio: int = 0,
        pooler_type: str = "ROIAlignV2",
        canonical_box_size: float = 224,
        canonical_level: int = 4,
        first_level: int = 2,
    ):
        """
        Args:
            output_size (int or tuple): pooled size.
            strides (list[float]): true stride of each level, finest first, each twice the
                previous one (e.g. [3.5, 7, 14, 28]).
            sampling_ratio, pooler_type, canonical_box_size, canonical_level: as ``ROIPooler``.
            first_level (int): nominal level of ``strides[0]`` (2 = "p2").
        """
        strides = [float(s) for s in strides]
        for a, b in zip(strides, strides[1:]):
            if abs(b - 2 * a) > 1e-6 * b:
                raise ValueError(f"pooler strides must double level to level; got {strides}")
        nominal = [1.0 / 2 ** (first_level + i) for i in range(len(strides))]
        super().__init__(
            output_size,
            scales=nominal,
            sampling_ratio=sampling_ratio,
            pooler_type=pooler_type,
            canonical_box_size=canonical_box_size,
            canonical_level=canonical_level,
        )
        for pooler, s in zip(self.level_poolers, strides):
            pooler.spatial_scale = 1.0 / s
        self.strides = strides
