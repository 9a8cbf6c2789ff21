# CLIPSelf self-distillation (docs/distillation.md §1): student = trainable CLIP tower (all blocks
# unlocked; patch embedding, positional embedding, class token, final norm and head frozen; any
# open_clip model: CLIPTower builds the ViT or CNN tower of model_name), teacher = a frozen copy
# of the same weights. Defaults: EVA02-CLIP-B/16 (open_clip tag of the authors' base weights
# EVA02_CLIP_B_psz16_s8B; or pretrained="/path/EVA02_CLIP_B_psz16_s8B.pt").
from detectron2.config import LazyCall as L

from clipself.distill import CLIPSelf
from clipself.modeling import CLIPTower

model = L(CLIPSelf)(
    student=L(CLIPTower)(
        model_name="EVA02-B-16",
        pretrained="merged2b_s8b_b131k",
        freeze="clipself",
        last_block_mode="v",
    ),
    teacher=L(CLIPTower)(
        model_name="${..student.model_name}",
        pretrained="${..student.pretrained}",
        freeze="all",
    ),
    alpha=0.7,  # saved/evaluated weights = 0.7 * student + 0.3 * teacher (docs/distillation.md §7)
    loss_weight=1.0,
    # the image-level term (not in the paper, docs/distillation.md §10): 0 = the paper's loss;
    # > 0 also needs dataloader.train.mapper.whole_image_size (see
    # configs/CLIPSelf/clipself_eva02_b16_coco_patches_global_6ep.py)
    global_loss_weight=0.0,
    global_on_crops=False,
    # reuse the teacher's crop embeddings across epochs (proposal configs; docs/performance.md §2)
    teacher_cache=None,
)
