# The synthetic twin of CLIPSelf patches distillation: the toy CLIP (trained by `make demo` or
# tools/train_toy_clip.py) refined on the synthetic world's training images, evaluated on its
# panoptic validation split (boxes / thing masks / stuff masks vs image crops).
from ..CLIPSelf.clipself_eva02_b16_coco_patches_6ep import dataloader, model, optimizer, train
from ..common.schedules import warmup_cosine

model.student.model_name = "ToyCLIP-ViT-P8"  # ViT patch 8 at 64 px, width 128, 4 layers
model.student.pretrained = "./output/demo/toy_clip/toy_clip.pt"
model.alpha = 1.0  # report the student itself (the demo also reports other alphas)

dataloader.train.dataset.names = "synth_ovd_train"  # only the images are used
dataloader.train.mapper.image_size = 128  # 16 x 16 tokens
dataloader.train.mapper.crop_size = 64
dataloader.train.total_batch_size = 16
dataloader.train.num_workers = 2
dataloader.test.dataset.names = "synth_panoptic_val"
dataloader.test.mapper.mask_size = 16  # 128 / 8
dataloader.test.num_workers = 2
dataloader.evaluator.vocabulary.text_encoder.templates = "single"  # "a photo of a {}."

# 300 iters * 16 images = 2.4 epochs of a 2000-image world
train.max_iter = 300
lr_multiplier = warmup_cosine(max_iter=300, warmup_iters=20)
optimizer.lr = 1e-3  # a from-scratch 0.8 M-parameter toy: 1e-4 left the loss on a plateau
train.eval_period = 100
train.checkpointer.period = 100
train.output_dir = "./output/synthetic/clipself_toy_patches"
