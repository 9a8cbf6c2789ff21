from .detection import DatasetMapper
from .distill import CLIPSelfMapper
from .region_eval import RegionEvalMapper
from .panoptic import PanopticMapper
from .semseg import SemSegMapper, remap_ignored
