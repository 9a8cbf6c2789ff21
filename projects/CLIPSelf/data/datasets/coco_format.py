"""Loading COCO-format instance json files with a category mapping fixed at registration.

Detectron2's ``load_coco_json(..., dataset_name)`` derives ``thing_classes`` and the contiguous ids
from the json's own ``categories``. Here the class list is part of the registered metadata (it must
not depend on which json is on disk, and the train and val splits of one benchmark must share it),
so the json is loaded with raw ids and mapped with the registered
``thing_dataset_id_to_contiguous_id``.
"""
from typing import Dict, List

from detectron2.data.datasets.coco import load_coco_json

from .paths import require_path

__all__ = ["load_coco_json_with_id_map"]


def load_coco_json_with_id_map(json_file: str, image_root: str, id_map: Dict[int, int],
                               how_to_make: str, how_to_get_images: str) -> List[dict]:
    """Load a COCO instances json and map its category ids to contiguous ids.

    Args:
        json_file (str): COCO-format instances json.
        image_root (str): folder of the images named in the json.
        id_map (dict[int, int]): dataset category id -> contiguous id (the registered
            ``thing_dataset_id_to_contiguous_id``).
        how_to_make (str): command that creates ``json_file`` (used in error messages).
        how_to_get_images (str): what to do when ``image_root`` is missing.

    Returns:
        list[dict]: Detectron2 dataset dicts whose annotations have contiguous ``category_id``.
    """
    require_path(json_file, how_to_make)
    require_path(image_root, how_to_get_images)
    dicts = load_coco_json(json_file, image_root, dataset_name=None)
    for record in dicts:
        for obj in record["annotations"]:
            try:
                obj["category_id"] = id_map[obj["category_id"]]
            except KeyError:
                raise KeyError(
                    f"{json_file}: an annotation of image {record['image_id']} has category_id="
                    f"{obj['category_id']}, which is not one of the {len(id_map)} categories of "
                    f"this dataset. Re-create the file with: {how_to_make}"
                ) from None
    return dicts
