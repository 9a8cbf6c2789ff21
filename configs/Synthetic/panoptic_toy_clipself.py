# The synthetic twin of the open-vocabulary panoptic run: the toy CLIP refined by CLIPSelf (written
# by `make demo`) as the frozen tower, a small pixel decoder / masked-attention decoder, trained and
# evaluated on the synthetic world's panoptic splits (PQ, mIoU, mask AP) at 128 px. Novel things are
# void in the training maps, so at test they are unseen classes (ensemble exponent beta).
from ..Panoptic.ov_maskformer_eva02_b16_coco_clipself_patches_50ep import (
    dataloader,
    model,
    optimizer,
    train,
)
from ..common.schedules import warmup_multistep

IMAGE_SIZE = 128
WIDTH, EMBED, DIM, LAYERS, POINTS = 128, 128, 64, 3, 1024

clip = model.backbone.clip
clip.model_name = "ToyCLIP-ViT-P8"
clip.pretrained = "./output/demo/clipself/toy_clipself.pt"
clip.out_indices = [0, 1, 2, 3]
for k in range(4):
    model.pixel_decoder.input_shape[f"res{k + 2}"].channels = WIDTH
pd = model.pixel_decoder
pd.conv_dim = pd.mask_dim = DIM
pd.transformer_nheads = 4
pd.transformer_dim_feedforward = 128
pd.transformer_enc_layers = 2
dec = model.transformer_decoder
dec.in_channels = dec.hidden_dim = dec.mask_dim = DIM
dec.num_queries = 20
dec.nheads = 4
dec.dim_feedforward = 256
dec.dec_layers = LAYERS
dec.class_head.hidden_dim = dec.class_head.mask_dim = dec.class_head.embed_dim = DIM
dec.class_head.text_dim = EMBED
model.criterion.num_classes = 35
model.criterion.matcher.num_points = POINTS
model.criterion.num_points = POINTS
model.criterion.weight_dict.num_aux = LAYERS
model.vocabulary.dataset_name = "synth_panoptic_val"
model.vocabulary.seen_dataset = "synth_panoptic_train"  # novel things are void there: unseen
text = model.vocabulary.text_encoder
text.model_name = "ToyCLIP-ViT-P8"
text.pretrained = "./output/demo/toy_clip/toy_clip.pt"  # the original toy text tower
text.cache_dir = "./output/demo/text_embeddings"
model.square_pad = IMAGE_SIZE

dataloader.train.dataset.names = "synth_panoptic_train"
dataloader.train.mapper.augmentations.image_size = IMAGE_SIZE
dataloader.train.mapper.augmentations.min_scale = 0.5
dataloader.train.total_batch_size = 8
dataloader.train.num_workers = 2
dataloader.test.dataset.names = "synth_panoptic_val"
dataloader.test.mapper.augmentations[0].target_height = IMAGE_SIZE
dataloader.test.mapper.augmentations[0].target_width = IMAGE_SIZE
dataloader.test.num_workers = 1

train.max_iter = 1000
lr_multiplier = warmup_multistep(max_iter=1000, milestones=[800], warmup_iters=50)
optimizer.lr = 1e-3
train.clip_grad.params.max_norm = 1.0
train.amp.enabled = False
train.eval_period = 500
train.checkpointer.period = 500
train.output_dir = "./output/synthetic/panoptic_toy_clipself"
