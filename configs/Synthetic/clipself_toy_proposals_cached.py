# The synthetic proposals run with the teacher cache (docs/performance.md §2): each proposal
# crop goes through the frozen toy CLIP once; what `tools/benchmark.py` and the README's epoch
# figures compare with configs/Synthetic/clipself_toy_proposals.py.
from detectron2.config import LazyCall as L

from clipself.distill import TeacherCache

from .clipself_toy_proposals import dataloader, lr_multiplier, model, optimizer, train

model.teacher_cache = L(TeacherCache)(directory=None)  # memory: 2000 images x ~8 crops x 128-d
train.output_dir = "./output/synthetic/clipself_toy_proposals_cached"
