"""Register every dataset this project knows, rooted at $DETECTRON2_DATASETS (no disk access)."""
from .paths import dataset_root


def register_all(root: str) -> None:
    """Register all datasets under ``root``. Called once at import with :func:`dataset_root`."""
    # Filled in by the dataset modules (OV-COCO, OV-LVIS, COCO panoptic, ADE20K, synthetic world).
    from .ade20k import register_all_ade20k
    from .coco_panoptic import register_coco_panoptic_with_sem_seg
    from .ov_coco import register_ov_coco
    from .ov_lvis import register_ov_lvis
    register_ov_coco(root)
    register_ov_lvis(root)
    register_coco_panoptic_with_sem_seg(root)
    register_all_ade20k(root)
    from .clipself_proposals import register_clipself_proposals
    register_clipself_proposals(root)
    from .synthetic import register_synthetic
    register_synthetic(root)


register_all(dataset_root())
