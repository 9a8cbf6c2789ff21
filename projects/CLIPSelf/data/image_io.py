"""Reading images and label maps with errors that name the file (a truncated JPEG otherwise
surfaces as a bare ``OSError: image file is truncated`` deep inside a data-loader worker)."""
import contextlib
from typing import Iterator, Optional

import numpy as np
from detectron2.data import detection_utils as utils
from PIL import Image

__all__ = ["named_file_errors", "read_image_checked", "read_image_array"]


@contextlib.contextmanager
def named_file_errors(file_name: str, what: str = "image") -> Iterator[None]:
    """Re-raise a missing / unreadable file inside the block with ``file_name`` and a hint."""
    try:
        yield
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"{what} {file_name} does not exist (check $DETECTRON2_DATASETS): {e}") from e
    except (OSError, SyntaxError, ValueError) as e:  # PIL: truncated, corrupt, bad mode
        raise OSError(f"Cannot read {what} {file_name}: {e}. Is the file truncated or "
                      f"corrupt? Re-download or re-create it.") from e


def read_image_array(file_name: str, format: Optional[str] = None) -> np.ndarray:
    """Detectron2's ``read_image`` (EXIF orientation, ``format`` "RGB"/"BGR"/"L"/None) with an
    error naming the file."""
    with named_file_errors(file_name):
        return utils.read_image(file_name, format=format)


def read_image_checked(file_name: str) -> Image.Image:
    """An RGB PIL image, with an error naming the file when it is missing or broken."""
    return Image.fromarray(read_image_array(file_name, format="RGB"))
