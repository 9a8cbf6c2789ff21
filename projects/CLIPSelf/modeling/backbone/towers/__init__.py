"""One adapter per open_clip tower family (docs/dense_features.md §9): :func:`tower_adapter` picks
the adapter for a built ``model.visual`` or raises :class:`TowerUnsupported` saying why."""
from torch import nn

from .base import ConvTower, RopeSpec, TowerUnsupported, TransformerTower
from .modified_resnet import ModifiedResNetTower
from .openai_vit import OpenAIViTTower
from .timm_cnn import TimmCNNTower
from .timm_eva import TimmEvaTower
from .timm_relpos import TimmRelPosViTTower
from .timm_vit import TimmViTTower

#: transformer adapters (each matches its trunk class exactly; none is a subclass of another)
TRANSFORMER_TOWERS = (OpenAIViTTower, TimmEvaTower, TimmRelPosViTTower, TimmViTTower)
#: CNN / hybrid adapters
CONV_TOWERS = (ModifiedResNetTower, TimmCNNTower)


def tower_adapter(visual: nn.Module, embed_dim: int):
    """The adapter for an open_clip visual tower.

    Args:
        visual (nn.Module): ``model.visual`` of an open_clip model (built, any device).
        embed_dim (int): the CLIP embedding dim D of the model config.
    Returns:
        TransformerTower or ConvTower.
    Raises:
        TowerUnsupported: a tower family (or a variant of one) without a dense path here.
    """
    for cls in TRANSFORMER_TOWERS + CONV_TOWERS:
        if cls.matches(visual):
            return cls(visual, embed_dim)
    inner = getattr(visual, "trunk", visual)
    raise TowerUnsupported(
        f"{type(visual).__name__} ({type(inner).__name__}) has no dense-feature adapter: "
        "supported are open_clip VisionTransformer and ModifiedResNet, and timm "
        "VisionTransformer, Eva, ConvNeXt, FastViT and Swin trunks"
    )


__all__ = [
    "ConvTower", "RopeSpec", "TowerUnsupported", "TransformerTower", "ModifiedResNetTower",
    "OpenAIViTTower", "TimmCNNTower", "TimmEvaTower", "TimmRelPosViTTower", "TimmViTTower",
    "TRANSFORMER_TOWERS",
    "CONV_TOWERS", "tower_adapter",
]
