# CAT-Seg + CLIPSelf ViT-B/16 evaluated on PASCAL VOC 2012, 20 classes, background ignored:
#   python train_net.py --config-file configs/CATSeg/eval/catseg_vit_b16_voc20.py --eval-only \
#       train.init_checkpoint=output/CATSeg/catseg_vit_b16_coco_stuff_clipself_80k/model_final.pth
from ..catseg_vit_b16_eval import dataloader, lr_multiplier, model, optimizer, train

dataloader.test.dataset.names = "voc_2012_val_sem_seg"
train.output_dir = "./output/CATSeg/eval/catseg_vit_b16_voc20"
