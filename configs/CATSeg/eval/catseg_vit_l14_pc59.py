# CAT-Seg + CLIPSelf ViT-L/14-336 evaluated on PASCAL-Context-59 (ignore 255):
#   python train_net.py --config-file configs/CATSeg/eval/catseg_vit_l14_pc59.py --eval-only \
#       train.init_checkpoint=output/CATSeg/catseg_vit_l14_coco_stuff_clipself_80k/model_final.pth
from ..catseg_vit_l14_eval import dataloader, lr_multiplier, model, optimizer, train

dataloader.test.dataset.names = "context_59_val_sem_seg"
train.output_dir = "./output/CATSeg/eval/catseg_vit_l14_pc59"
