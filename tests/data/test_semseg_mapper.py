"""SemSegMapper: labels follow the image through the transforms; ignored ids; 16-bit labels."""
import numpy as np
import pytest
from detectron2.data import transforms as T
from PIL import Image

from clipself.data.mappers import SemSegMapper, remap_ignored


def _write(tmp_path, label, mode=None):
    h, w = label.shape
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[..., 0] = (label % 256).astype(np.uint8)  # the image encodes the label
    Image.fromarray(img).save(tmp_path / "img.png")
    path = tmp_path / ("lab.tif" if mode == "I;16" else "lab.png")
    Image.fromarray(label.astype(np.uint16 if mode else np.uint8)).save(path)
    return {"file_name": str(tmp_path / "img.png"), "sem_seg_file_name": str(path),
            "height": h, "width": w, "image_id": 3}


def test_remap_ignored():
    lab = np.array([[0, 1, 2], [2, 255, 1]])
    assert remap_ignored(lab, [2], 255).tolist() == [[0, 1, 255], [255, 255, 1]]
    assert remap_ignored(lab, [], 255) is lab


def test_labels_follow_image_and_ignore_ids(tmp_path):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 5, size=(12, 20))
    rec = dict(_write(tmp_path, label), sem_seg_ignore_ids=[4])
    mapper = SemSegMapper(is_train=True, augmentations=[
        T.RandomFlip(prob=1.0), T.Resize((24, 40), interp=Image.NEAREST)])
    out = mapper(rec)
    img, sem = out["image"][0].numpy(), out["sem_seg"].numpy()
    assert out["image"].shape == (3, 24, 40) and sem.dtype == np.int64
    expected = np.where(img == 4, 255, img)  # image pixels carry the original label
    assert (sem == expected).all()
    assert (out["height"], out["width"]) == (12, 20)
    test = SemSegMapper(is_train=False, augmentations=[])(rec)
    assert "sem_seg" not in test and test["image"].shape == (3, 12, 20)


def test_sixteen_bit_labels(tmp_path):
    label = np.array([[0, 846, 65535], [300, 1, 2]])
    rec = _write(tmp_path, label, mode="I;16")
    out = SemSegMapper(is_train=True, augmentations=[], ignore_label=65535)(rec)
    assert out["sem_seg"].tolist() == label.tolist()


def test_catseg_augmentations_and_errors(tmp_path):
    label = np.random.default_rng(1).integers(0, 3, size=(50, 70))
    rec = _write(tmp_path, label)
    mapper = SemSegMapper(is_train=True,
                          augmentations=SemSegMapper.catseg_augmentations(32, 32))
    out = mapper(rec)
    assert out["image"].shape == (3, 32, 32) and out["sem_seg"].shape == (32, 32)
    with pytest.raises(ValueError, match="sem_seg_file_name"):
        mapper(dict(rec, sem_seg_file_name=None))
