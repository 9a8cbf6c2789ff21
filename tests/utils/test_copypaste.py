"""parse_copypaste reads Detectron2's print_csv_format blocks."""
import math

import pytest

from clipself.utils import parse_copypaste

LOG = """[d2] copypaste: Task: bbox
[d2] copypaste: AP,AP50,AP50_novel
[d2] copypaste: 1.5,nan,20.25
[d2] copypaste: Task: segm
[d2] copypaste: AP
[d2] copypaste: 3.0
"""


def test_parse_copypaste_blocks():
    bbox = parse_copypaste(LOG, "bbox")
    assert bbox["AP"] == 1.5 and bbox["AP50_novel"] == 20.25 and math.isnan(bbox["AP50"])
    assert parse_copypaste(LOG, "segm") == {"AP": 3.0}
    with pytest.raises(ValueError, match="panoptic_seg"):
        parse_copypaste(LOG, "panoptic_seg")
