# The synthetic twin of CAT-Seg + CLIPSelf: the toy CLIP refined by CLIPSelf (written by
# `make demo`) at 128 px (16 x 16 tokens; guidance blocks 1 and 2 of 4), a narrow 1-layer
# aggregator, trained on the synthetic world's semantic maps (novel things are void in training)
# and evaluated on the validation split over all 35 classes (mIoU).
from ..CATSeg.catseg_vit_b16_coco_stuff_clipself_80k import dataloader, model, optimizer, train
from ..common.models.catseg import set_clip_tower
from ..common.schedules import warmup_multistep

IMAGE_SIZE = 128
set_clip_tower(
    model,
    model_name="ToyCLIP-ViT-P8",
    pretrained="./output/demo/clipself/toy_clipself.pt",
    out_indices=[1, 2],
    width=128,
    embed_dim=128,
    clip_resolution=IMAGE_SIZE,
    text_pretrained="./output/demo/toy_clip/toy_clip.pt",  # the original toy text tower
)
model.vocabulary.dataset_name = "synth_sem_seg_train"
model.vocabulary.text_encoder.cache_dir = "./output/demo/text_embeddings"
model.class_budget = 64
# CPU-sized: one prompt template ("a photo of a {}.", like CAT-Seg's later single-template
# version) and narrow aggregation / decoder widths (the decoder runs on every class at 4x the grid)
model.vocabulary.templates = "single"
agg = model.aggregator
agg.prompt_channels = 1
agg.hidden_dim = 32
agg.appearance_guidance_dim = agg.text_guidance_dim = 16
agg.num_layers = 1
agg.num_heads = 2
agg.window_size = 8
dec = model.decoder
dec.hidden_dim = 32
dec.decoder_dims = (16, 8)
dec.guidance_up_channels = (16, 8)
dec.guidance_dims = (8, 4)
del agg, dec  # aliases only (LazyConfig would keep them as top-level keys)
model.sliding_window_size = 192  # 128 + one 64-px stride (sliding_window=True to use it)
model.sliding_window_stride = 64

dataloader.train.dataset.names = "synth_sem_seg_train"
dataloader.train.mapper.augmentations.image_size = IMAGE_SIZE
dataloader.train.mapper.augmentations.crop_size = IMAGE_SIZE
dataloader.train.total_batch_size = 8
dataloader.train.num_workers = 2
dataloader.test.dataset.names = "synth_sem_seg_val"
dataloader.test.mapper.augmentations[0].short_edge_length = IMAGE_SIZE
dataloader.test.num_workers = 1

optimizer.lr = 1e-3
train.max_iter = 1000
lr_multiplier = warmup_multistep(max_iter=1000, milestones=[800], warmup_iters=50)
train.clip_grad.params.max_norm = 1.0
train.amp.enabled = False
train.eval_period = 500
train.checkpointer.period = 500
train.output_dir = "./output/synthetic/catseg_toy"
