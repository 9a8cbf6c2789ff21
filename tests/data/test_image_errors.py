"""A truncated or missing file in any training mapper raises an error that names the file."""
import numpy as np
import pytest
from PIL import Image

from clipself.data.image_io import read_image_array
from clipself.data.mappers import (
    CLIPSelfMapper,
    DatasetMapper,
    PanopticMapper,
    RegionEvalMapper,
    SemSegMapper,
)


@pytest.fixture
def truncated(tmp_path):
    """A JPEG cut to half its bytes (PIL: "image file is truncated")."""
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), np.uint8)).save(good)
    data = good.read_bytes()
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(data[: len(data) // 2])
    return str(bad)


def _mappers():
    return {
        "detection": DatasetMapper(is_train=True, augmentations=[], image_format="RGB"),
        "panoptic": PanopticMapper(is_train=True, augmentations=[]),
        "semseg": SemSegMapper(is_train=True, augmentations=[]),
        "clipself": CLIPSelfMapper(image_size=64, crop_size=32, region_source="grid"),
        "region_eval": RegionEvalMapper(image_size=64, crop_size=32),
    }


def test_every_mapper_names_a_truncated_image(truncated):
    record = {"file_name": truncated, "image_id": 1, "annotations": [], "segments_info": [],
              "pan_seg_file_name": truncated, "sem_seg_file_name": truncated}
    for name, mapper in _mappers().items():
        with pytest.raises(OSError, match=r"broken\.jpg.*truncated") as err:
            mapper(dict(record))
        assert "broken.jpg" in str(err.value), name


def test_missing_image_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        read_image_array(str(tmp_path / "nothere.png"))
