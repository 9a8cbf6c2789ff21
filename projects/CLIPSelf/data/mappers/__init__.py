from .distill import CLIPSelfMapper, read_image_checked
from .region_eval import RegionEvalMapper
from .panoptic import PanopticMapper
from .semseg import SemSegMapper, remap_ignored
