# Closed-vocabulary Faster R-CNN (ResNet-18-FPN, from scratch) on the synthetic world's base
# classes: the project's smallest end-to-end detection run (train_net.py, evaluator, checkpoints).
# Novel classes are never annotated in synth_ovd_train, so this model cannot find them; F-ViT
# (configs/Synthetic/fvit_*) is the open-vocabulary detector.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import ResNet

from ..common.data.detection import dataloader
from ..common.models.faster_rcnn_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedules import warmup_multistep
from ..common.train import train

dataloader.train.dataset.names = "synth_ovd_train"
dataloader.test.dataset.names = "synth_ovd_val"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(128, 160, 192), sample_style="choice", max_size=384),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=160, max_size=384)
]
dataloader.train.total_batch_size = 8
dataloader.train.num_workers = 2
dataloader.test.num_workers = 1

model.backbone.bottom_up.stem.norm = "GN"
model.backbone.bottom_up.stages = L(ResNet.make_default_stages)(depth=18, norm="GN")
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
model.roi_heads.num_classes = 30
model.roi_heads.batch_size_per_image = 128

# 1500 iters * 8 images / 2000 images = 6 epochs
train.max_iter = 1500
train.eval_period = 500
train.checkpointer.period = 500
train.output_dir = "./output/synthetic/faster_rcnn_R18_FPN_base"
optimizer.lr = 0.02
lr_multiplier = warmup_multistep(max_iter=1500, milestones=[1100, 1400], warmup_iters=100)
