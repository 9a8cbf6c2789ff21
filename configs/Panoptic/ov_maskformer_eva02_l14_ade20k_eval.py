# Zero-shot transfer of the COCO-trained L/14-336 panoptic model to ADE20K-150 (paper Table 5, ADE
# columns): the test split, vocabulary (150 ADE names; seen = those matching a COCO panoptic class
# by synonym, ensemble alpha 0.35 / beta 0.65) and thing ids follow ADE; PQ, mIoU, mask AP.
#   python train_net.py --config-file configs/Panoptic/ov_maskformer_eva02_l14_ade20k_eval.py \
#       --eval-only train.init_checkpoint=output/Panoptic/<coco run>/model_final.pth
from ..common.models.ov_maskformer import set_test_dataset
from .ov_maskformer_eva02_l14_coco_clipself_patches_50ep import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

set_test_dataset(model, dataloader, dataset_name="ade20k_panoptic_val",
                 train_dataset="coco_2017_train_panoptic_with_sem_seg")
train.output_dir = "./output/Panoptic/ov_maskformer_eva02_l14_ade20k_eval"
