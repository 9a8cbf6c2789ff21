"""Register every dataset this project knows, rooted at $DETECTRON2_DATASETS (no disk access)."""
from .ade20k import register_all_ade20k
from .clipself_proposals import register_clipself_proposals
from .coco_panoptic import register_coco_panoptic_with_sem_seg
from .ov_coco import register_ov_coco
from .ov_lvis import register_ov_lvis
from .paths import dataset_root
from .sem_seg_benchmarks import register_sem_seg_benchmarks
from .synthetic import register_synthetic


def register_all(root: str) -> None:
    """Register all datasets under ``root``. Called once at import with :func:`dataset_root`.

    Names: ``ov_coco_*``, ``ov_lvis_*``, ``coco_2017_*_panoptic_with_sem_seg``, ``ade20k_*``,
    ``coco_2017_train_clipself_proposals``, the CAT-Seg benchmarks (``coco_2017_*_stuff_sem_seg``,
    ``ade20k_full_sem_seg_*``, ``context_{59,459}_val_sem_seg``, ``voc_2012_val*_sem_seg``) and
    the synthetic world's ``synth_*`` (see datasets/README.md).
    """
    register_ov_coco(root)
    register_ov_lvis(root)
    register_coco_panoptic_with_sem_seg(root)
    register_all_ade20k(root)
    register_clipself_proposals(root)
    register_sem_seg_benchmarks(root)
    register_synthetic(root)


register_all(dataset_root())
