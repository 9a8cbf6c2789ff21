# Evaluation protocol of CAT-Seg (docs/segmentation.md §10) for the ViT-B/16 model: sliding-window
# inference, 1 x 1 class-aggregation pooling (the aggregator's test setting), the class list of the
# test set. configs/CATSeg/eval/ has one config per benchmark; or switch the dataset here (no
# retraining; the vocabulary follows the dataset):
#   python train_net.py --config-file configs/CATSeg/catseg_vit_b16_eval.py --eval-only \
#       train.init_checkpoint=output/CATSeg/catseg_vit_b16_coco_stuff_clipself_80k/model_final.pth \
#       dataloader.test.dataset.names=<name>
# with <name> one of ade20k_sem_seg_val, ade20k_full_sem_seg_val,
# context_59_val_sem_seg (PC-59), context_459_val_sem_seg (PC-459), voc_2012_val_sem_seg (VOC-20),
# voc_2012_val_background_sem_seg (VOC-21, background clamped by VOCbEvaluator).
from .catseg_vit_b16_coco_stuff_clipself_80k import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

model.sliding_window = True
train.output_dir = "./output/CATSeg/catseg_vit_b16_eval"
