# CLIPSelf on EVA02-CLIP-L/14-336 with region proposals.
from detectron2.config import LazyCall as L

from clipself.distill import TeacherCache

from .clipself_eva02_l14_coco_patches_6ep import dataloader, lr_multiplier, model, optimizer, train

dataloader.train.dataset.names = "coco_2017_train_clipself_proposals"
dataloader.train.mapper.region_source = "proposals"
dataloader.train.mapper.crop_scale = 1.5
# the frozen teacher embeds each proposal crop once (docs/performance.md §2): entries on disk under
# the teacher's weights hash, the most recent 5000 images per process in memory
model.teacher_cache = L(TeacherCache)(directory="./output/teacher_cache", max_images=5000)
train.output_dir = "./output/CLIPSelf/clipself_eva02_l14_coco_proposals_6ep"
