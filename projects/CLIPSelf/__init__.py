"""CLIPSelf on Detectron2: self-distillation of CLIP ViTs for open-vocabulary dense prediction.

Importing the package registers its datasets in Detectron2's catalogs (no disk access).
"""
from . import data  # noqa: F401  (only registration)

__version__ = "0.1.0"
