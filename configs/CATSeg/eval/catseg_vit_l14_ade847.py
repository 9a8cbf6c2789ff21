# CAT-Seg + CLIPSelf ViT-L/14-336 evaluated on ADE20K-847 (uint16 labels, ignore 65535):
#   python train_net.py --config-file configs/CATSeg/eval/catseg_vit_l14_ade847.py --eval-only \
#       train.init_checkpoint=output/CATSeg/catseg_vit_l14_coco_stuff_clipself_80k/model_final.pth
from ..catseg_vit_l14_eval import dataloader, lr_multiplier, model, optimizer, train

dataloader.test.dataset.names = "ade20k_full_sem_seg_val"
train.output_dir = "./output/CATSeg/eval/catseg_vit_l14_ade847"
