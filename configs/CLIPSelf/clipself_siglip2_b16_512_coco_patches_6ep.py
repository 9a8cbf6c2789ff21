# CLIPSelf on SigLIP2 ViT-B/16 at 512 px (open_clip "ViT-B-16-SigLIP2-512", webli), COCO patches,
# the paper's B/16 recipe (docs/distillation.md §6): student input 1024 (64 x 64 tokens), teacher
# crops at the tower's native 512, alpha 0.7. SigLIP has no class token: the teacher embedding is
# the MAP attention-pool output and the dense map is the pool's value path per token
# (docs/dense_features.md §9). Its text tokenizer comes from the Hugging Face hub; offline, pass a
# local copy: dataloader.evaluator.vocabulary.text_encoder.tokenizer=/path/to/ViT-B-16-SigLIP2-512
from .clipself_eva02_b16_coco_patches_6ep import dataloader, lr_multiplier, model, optimizer, train

model.student.model_name = "ViT-B-16-SigLIP2-512"
model.student.pretrained = "webli"
dataloader.train.mapper.crop_size = 512
train.output_dir = "./output/CLIPSelf/clipself_siglip2_b16_512_coco_patches_6ep"
