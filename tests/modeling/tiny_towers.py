"""Tiny open_clip model configs, one per tower family / variant, for the CLIPTower tests: the real
architectures (block, attention, pooling and stem types), shrunk in width and depth through
``vision_cfg`` (open_clip towers) or ``timm_model_kwargs`` (timm trunks)."""
import torch

TEXT = {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1}


def _vit(name, **vision):
    return {"name": name, "embed_dim": 32, "text_cfg": TEXT, "vision_cfg": dict(
        {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
        **vision)}


def _timm(name, timm_name, pool, proj, img=32, **kwargs):
    timm_kwargs = dict({"img_size": img, "patch_size": 8, "embed_dim": 64, "depth": 2,
                        "num_heads": 2}, **kwargs)
    return {"name": name, "embed_dim": 64 if proj == "none" else 32, "text_cfg": TEXT,
            "vision_cfg": {"image_size": img, "timm_model_name": timm_name, "timm_pool": pool,
                           "timm_proj": proj, "timm_model_kwargs": timm_kwargs}}


TINY = {
    # open_clip VisionTransformer: class token; CoCa attentional pooler; CLIPA average pool
    "openai": _vit("tiny-openai"),
    "coca": _vit("tiny-coca", attentional_pool=True, attn_pooler_queries=4, attn_pooler_heads=2,
                 output_tokens=True),
    "clipa": _vit("tiny-clipa", no_ln_pre=True, pool_type="avg", final_ln_after_pool=True),
    # timm VisionTransformer: SigLIP (no class token, MAP head); relative positions
    "siglip": _timm("tiny-siglip", "vit_base_patch16_siglip_224", "map", "none"),
    "relpos": _timm("tiny-relpos", "vit_relpos_medium_patch16_cls_224", "", "linear",
                    rel_pos_dim=16),
    # timm Eva: EVA02 (RoPE "ij", class token), EVA02-E (post-norm), PE-Core (RoPE "xy" with
    # offset, AttentionRope, class token + MAP head)
    "eva02": _timm("tiny-eva02", "eva02_base_patch16_clip_224", "token", None),
    "eva02e": _timm("tiny-eva02e", "eva02_enormous_patch14_clip_224", "token", None),
    "pe": _timm("tiny-pe", "vit_pe_core_base_patch16_224", "map", None, attn_pool_num_heads=2),
    # CNNs: ModifiedResNet (attention pool), ConvNeXt (norm + linear head)
    "rn": {"name": "tiny-rn", "embed_dim": 32, "text_cfg": TEXT, "vision_cfg": {
        "image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 8}},
    "convnext": {"name": "tiny-convnext", "embed_dim": 32, "text_cfg": TEXT, "vision_cfg": {
        "image_size": 64, "timm_model_name": "convnext_tiny", "timm_pool": "",
        "timm_proj": "linear", "timm_model_kwargs": {"depths": [1, 1, 1, 1],
                                                     "dims": [16, 32, 64, 128]}}},
}
VIT_FAMILIES = ["openai", "coca", "clipa", "siglip", "relpos", "eva02", "eva02e", "pe"]
CNN_FAMILIES = ["rn", "convnext"]


@torch.no_grad()
def randomize(module, std=0.05, seed=0):
    """Perturb every parameter (and BatchNorm statistic) so that defaults cannot hide mistakes."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.add_(torch.randn(p.shape, generator=g) * std)
    for name, b in module.named_buffers():
        if name.endswith("running_var"):
            b.copy_(0.5 + torch.rand(b.shape, generator=g))
        elif name.endswith("running_mean"):
            b.copy_(0.1 * torch.randn(b.shape, generator=g))
    return module
