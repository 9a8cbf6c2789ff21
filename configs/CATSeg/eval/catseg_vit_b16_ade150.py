# CAT-Seg + CLIPSelf ViT-B/16 evaluated on ADE20K-150 (2000 val images, ignore 255):
#   python train_net.py --config-file configs/CATSeg/eval/catseg_vit_b16_ade150.py --eval-only \
#       train.init_checkpoint=output/CATSeg/catseg_vit_b16_coco_stuff_clipself_80k/model_final.pth
from ..catseg_vit_b16_eval import dataloader, lr_multiplier, model, optimizer, train

dataloader.test.dataset.names = "ade20k_sem_seg_val"
train.output_dir = "./output/CATSeg/eval/catseg_vit_b16_ade150"
