from .instance_seg import InstanceSegEvaluator, unmap_category_ids
from .lvis_compat import patch_lvis_numpy_aliases
from .ov_coco import OVCOCOEvaluator, per_class_ap50
from .region_recognition import (
    RegionRecognitionEvaluator,
    average_precision,
    mean_average_precision,
    mean_class_accuracy,
)
from .voc_background import VOCbEvaluator, evaluator_for_dataset

patch_lvis_numpy_aliases()  # Detectron2's LVISEvaluator needs it with NumPy >= 1.24
