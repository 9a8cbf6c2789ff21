"""Pure tensor functions behind CLIPSelf dense features (docs/dense_features.md §2-§6, §7).

Shape shorthand in this module:
    B: images, h/w: token grid (rows/cols), N: tokens (incl. the class token when noted),
    C: transformer width, H: attention heads, d: head dim, D: CLIP embedding dim,
    R: regions (boxes or masks) summed over images.

Everything here is a formula with a unit test: absolute positional-embedding resizing, RoPE
tables per axis, the last-block attention modes (value path, q-q, k-k, v-v, SCLIP CSA, ...),
RoI box pooling and mask pooling. No module state, no open_clip/timm dependency.
"""
import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from timm.layers import apply_rot_embed_cat, build_rotary_pos_embed, resample_abs_pos_embed
from timm.layers.pos_embed_sincos import freq_bands

__all__ = [
    "LAST_BLOCK_MODES",
    "check_image_size",
    "resize_abs_pos_embed",
    "rope_frequencies",
    "build_rope_table",
    "apply_rope",
    "attention_pool_value",
    "attend",
    "mode_attention",
    "gaussian_neighbour_bias",
    "clip_boxes_min_size",
    "pool_boxes",
    "pool_boxes_reference",
    "pool_masks",
]

#: Last-block attention modes. "v": value path, no token mixing (CLIPSelf/MaskCLIP,
#: docs/dense_features.md §2); "vanilla": softmax(q k^T) v; "qq"/"kk"/"vv": softmax(x x^T) v with x
#: = q, k or v (ClearCLIP/NACLIP-style); "csa": softmax(q q^T) v + softmax(k k^T) v (SCLIP);
#: "all": softmax of the mean of the q-q, k-k and v-v logits (docs/dense_features.md §7).
LAST_BLOCK_MODES = ("v", "vanilla", "qq", "kk", "vv", "csa", "all")


def check_image_size(height: int, width: int, patch_size: int) -> Tuple[int, int]:
    """Validate an input size for a patch-``patch_size`` ViT and return its token grid.

    Args:
        height (int), width (int): input size in pixels.
        patch_size (int): the ViT patch size.
    Returns:
        tuple[int, int]: the grid (h, w) = (height / p, width / p).
    Raises:
        ValueError: if a side is smaller than one patch or not a multiple of the patch.
    """
    if height < patch_size or width < patch_size:
        raise ValueError(
            f"Input of {height}x{width} px is smaller than one {patch_size}x{patch_size} patch; "
            f"resize or pad images to at least {patch_size} px per side."
        )
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"Input of {height}x{width} px is not a multiple of the patch size {patch_size}; "
            f"pad it to a multiple (Detectron2: size_divisibility={patch_size})."
        )
    return height // patch_size, width // patch_size


def resize_abs_pos_embed(
    pos_embed: torch.Tensor,
    src_grid: Sequence[int],
    dst_grid: Sequence[int],
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """Resize a learned absolute positional embedding to a new token grid (paper Sec. 3.3:
    dense features at any input size; ``docs/dense_features.md``).

    ``timm.layers.resample_abs_pos_embed`` with ``antialias=False``: the prefix (class token)
    part is kept, the patch part resampled bicubically with ``align_corners=False`` (antialiasing
    changes the cubic kernel even when upsampling, and the released models were not trained with
    it). At the source grid the input is returned unchanged.

    Args:
        pos_embed (Tensor): (..., num_prefix_tokens + h0*w0, C), e.g. (1+N0, C) for open_clip
            OpenAI-style ViTs or (1, 1+N0, C) for timm/EVA.
        src_grid (tuple[int, int]): (h0, w0), the pretraining grid.
        dst_grid (tuple[int, int]): (h, w), the target grid.
        num_prefix_tokens (int): leading tokens without a spatial position (1 = class token).
    Returns:
        Tensor: (..., num_prefix_tokens + h*w, C) in the input dtype.
    """
    h0, w0 = int(src_grid[0]), int(src_grid[1])
    h, w = int(dst_grid[0]), int(dst_grid[1])
    if pos_embed.shape[-2] != num_prefix_tokens + h0 * w0:
        raise ValueError(
            f"pos_embed has {pos_embed.shape[-2]} tokens, expected {num_prefix_tokens} + {h0}x{w0}"
        )
    if (h, w) == (h0, w0):
        return pos_embed
    lead, C = pos_embed.shape[:-2], pos_embed.shape[-1]
    flat = pos_embed.reshape(-1, pos_embed.shape[-2], C)  # (M, N0, C); timm resamples one row
    out = torch.cat([
        resample_abs_pos_embed(row[None], new_size=[h, w], old_size=[h0, w0],
                               num_prefix_tokens=num_prefix_tokens, antialias=False)
        for row in flat
    ])
    return out.reshape(*lead, num_prefix_tokens + h * w, C)


def rope_frequencies(head_dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """EVA02 RoPE frequencies ``f_i = temperature^(-i/n)``, i = 0..n-1, n = head_dim / 4
    (``timm.layers.pos_embed_sincos.freq_bands`` with step 1).

    Args:
        head_dim (int): attention head dim (64 for EVA02 B/L); a multiple of 4.
        temperature (float): the RoPE base.
    Returns:
        Tensor: (head_dim // 4,) float32.
    """
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs a head dim divisible by 4, got {head_dim}")
    return freq_bands(head_dim // 4, temperature, step=1)


def build_rope_table(
    grid: Sequence[int],
    head_dim: int,
    ref_grid: Optional[Sequence[int]] = (16, 16),
    temperature: float = 10000.0,
    grid_offset: float = 0.0,
    device: Optional[torch.device] = None,
    grid_indexing: str = "ij",
    rotate_half: bool = False,
) -> torch.Tensor:
    """2-D rotary table of EVA02 (and PE-Core) for an (h, w) token grid, one coordinate per axis.

    ``timm.layers.build_rotary_pos_embed(..., in_pixels=False, ref_feat_shape=ref_grid)`` as
    ``[sin | cos]``: row coordinates ``t_r = r / h * ref_h`` drive the first half of each head's
    channels and column coordinates ``t_c = c / w * ref_w`` the second half, each frequency
    repeated interleaved ``[f0, f0, f1, f1, ...]``. With a square grid n and ref 16 this is
    EVA02's ``t = arange(n) / n * 16``; a non-square grid rescales each axis on its own (EVA02's
    own code assumes a square grid). See ``docs/dense_features.md``.

    Args:
        grid (tuple[int, int]): (h, w) patch grid.
        head_dim (int): attention head dim.
        ref_grid (tuple[int, int] or None): reference grid (16, 16 for EVA02-CLIP); None keeps
            integer coordinates.
        temperature (float): the RoPE base.
        grid_offset (float): constant added to the integer coordinates before rescaling
            (PE-Core: 1).
        device (torch.device): output device.
        grid_indexing (str): "ij" (EVA02: the first half of each head's channels rotates with
            the row) or "xy" (PE-Core: with the column); rows stay in row-major token order
            either way (docs/dense_features.md §9).
        rotate_half (bool): the "half" channel layout ``[f0, f1, .., f0, f1, ..]`` instead of
            the interleaved one (use with ``apply_rope(..., half=True)``).
    Returns:
        Tensor: (h*w, 2*head_dim) float32, ``[sin | cos]``, rows in row-major token order.
    """
    if grid_indexing not in ("ij", "xy"):
        raise ValueError(f"grid_indexing={grid_indexing!r}; use 'ij' or 'xy'")
    sin, cos = build_rotary_pos_embed(
        [int(grid[0]), int(grid[1])], bands=rope_frequencies(head_dim, temperature).to(device),
        in_pixels=False, ref_feat_shape=None if ref_grid is None else list(ref_grid),
        grid_offset=grid_offset, grid_indexing=grid_indexing, rotate_half=rotate_half,
        device=device,
    )
    return torch.cat([sin, cos], dim=-1)


def apply_rope(x: torch.Tensor, table: torch.Tensor, half: bool = False) -> torch.Tensor:
    """Rotate interleaved channel pairs: ``x * cos + rot(x) * sin``, rot(x0, x1) = (-x1, x0)
    (``timm.layers.apply_rot_embed_cat``).

    Args:
        x (Tensor): (..., N, d) patch tokens (no class token).
        table (Tensor): (N, 2d) ``[sin | cos]`` from :func:`build_rope_table`.
        half (bool): the "half" layout (pairs ``(x_i, x_{i + d/2})``) instead of interleaved
            pairs; the table must be built with ``rotate_half=True``.
    Returns:
        Tensor: (..., N, d) in the dtype of ``x`` (computed in the promoted dtype).
    """
    return apply_rot_embed_cat(x, table, half=half).to(x.dtype)


def attention_pool_value(
    x: torch.Tensor,
    w_v: torch.Tensor,
    b_v: Optional[torch.Tensor],
    w_o: torch.Tensor,
    b_o: Optional[torch.Tensor],
) -> torch.Tensor:
    """Value path of a query-pooling attention head applied to every token (MaskCLIP for the
    ResNet attention pool, docs/dense_features.md §9): ``f_t = W_o (W_v x_t + b_v) + b_o``.

    Pooling heads (open_clip's ``AttentionPool2d`` and ``AttentionalPooler``, timm's
    ``AttentionPoolLatent``) compute ``W_o concat_h(sum_t a^h_t v^h_t) + b_o`` with
    ``v_t = W_v x_t + b_v`` split into heads ``h`` and per-head attention weights ``a^h_t``
    summing to 1. With one head (or equal weights across heads) this is ``sum_t a_t f_t``:
    ``f_t`` is what location ``t`` contributes to the pooled embedding. Heads are split and
    merged around the attention only, so the per-token value path needs no head reshaping.

    Args:
        x (Tensor): (B, M, C) tokens (already normalised / with positions as the head expects).
        w_v (Tensor): (E, C) value projection; b_v (Tensor): (E,) or None.
        w_o (Tensor): (D, E) output projection; b_o (Tensor): (D,) or None.
    Returns:
        Tensor: (B, M, D).
    """
    return F.linear(F.linear(x, w_v, b_v), w_o, b_o)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: Optional[float] = None,
    bias: Optional[torch.Tensor] = None,
    impl: str = "sdpa",
) -> torch.Tensor:
    """``softmax(q k^T * scale + bias) v``.

    Args:
        q (Tensor): (B, H, N, e); k (Tensor): (B, H, M, e); v (Tensor): (B, H, M, d).
        scale (float): logit scale; default ``e ** -0.5``.
        bias (Tensor): additive logit bias broadcastable to (B, H, N, M), or None.
        impl (str): "sdpa" (``F.scaled_dot_product_attention``, fused, no attention matrix) or
            "math" (materialised softmax; the slow reference for tests and benchmarks).
    Returns:
        Tensor: (B, H, N, d).
    """
    if impl == "sdpa":
        if bias is not None:
            bias = bias.to(q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    if impl != "math":
        raise ValueError(f"unknown attention impl {impl!r} (use 'sdpa' or 'math')")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = (q * scale) @ k.transpose(-2, -1)  # (B, H, N, M)
    if bias is not None:
        logits = logits + bias.to(logits.dtype)
    return logits.softmax(dim=-1) @ v


def mode_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mode: str,
    bias: Optional[torch.Tensor] = None,
    impl: str = "sdpa",
) -> torch.Tensor:
    """Token mixing of the last block for one of :data:`LAST_BLOCK_MODES`.

    The logit scale is ``d ** -0.5`` in every mode (the block's own scale).

    Args:
        q, k, v (Tensor): (B, H, N, d) after q/k norms and RoPE.
        mode (str): one of :data:`LAST_BLOCK_MODES`.
        bias (Tensor): optional additive logit bias (N, N), e.g. :func:`gaussian_neighbour_bias`;
            ignored by mode "v".
        impl (str): "sdpa" or "math", see :func:`attend`.
    Returns:
        Tensor: (B, H, N, d), the per-head attention output before head merging.
    """
    d = q.shape[-1]
    scale = d ** -0.5
    if mode == "v":
        return v
    if mode == "vanilla":
        return attend(q, k, v, scale, bias, impl)
    if mode == "qq":
        return attend(q, q, v, scale, bias, impl)
    if mode == "kk":
        return attend(k, k, v, scale, bias, impl)
    if mode == "vv":
        return attend(v, v, v, scale, bias, impl)
    if mode == "csa":
        return attend(q, q, v, scale, bias, impl) + attend(k, k, v, scale, bias, impl)
    if mode == "all":
        # mean of the three logits = one attention over channel-concatenated [q, k, v]
        qkv = torch.cat([q, k, v], dim=-1)
        return attend(qkv, qkv, v, scale / 3.0, bias, impl)
    raise ValueError(f"unknown last_block_mode {mode!r}; choose from {LAST_BLOCK_MODES}")


def gaussian_neighbour_bias(
    grid: Sequence[int],
    std: float,
    num_prefix_tokens: int = 1,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """NACLIP-style neighbourhood prior: a Gaussian window over token positions, added to logits.

    ``bias[i, j] = exp(-|p_i - p_j|^2 / (2 std^2))`` between patch tokens (grid units), 0 for rows
    and columns of prefix tokens. This is an (N, N) matrix: only for the optional last-block
    modes, never on the default path.

    Args:
        grid (tuple[int, int]): (h, w).
        std (float): window width in tokens.
        num_prefix_tokens (int): leading tokens without a position.
        device (torch.device): output device.
    Returns:
        Tensor: (num_prefix_tokens + h*w, num_prefix_tokens + h*w) float32.
    """
    h, w = int(grid[0]), int(grid[1])
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32, device=device),
        torch.arange(w, dtype=torch.float32, device=device),
        indexing="ij",
    )
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=-1)  # (h*w, 2)
    d2 = torch.cdist(pos, pos).pow(2)
    win = torch.exp(-d2 / (2.0 * std * std))
    n = num_prefix_tokens + h * w
    out = torch.zeros(n, n, dtype=torch.float32, device=device)
    out[num_prefix_tokens:, num_prefix_tokens:] = win
    return out


BoxesLike = Union[torch.Tensor, "object"]


def _as_box_tensor(b) -> torch.Tensor:
    """A (R, 4) tensor from a tensor or a Detectron2 ``Boxes`` (has ``.tensor``)."""
    t = b.tensor if hasattr(b, "tensor") else torch.as_tensor(b)
    return t.reshape(-1, 4)


def clip_boxes_min_size(
    boxes: torch.Tensor, height: float, width: float, min_size: float = 1e-2
) -> torch.Tensor:
    """Clip xyxy boxes to the image and give degenerate boxes a tiny positive size.

    A zero-size (or inverted, or fully outside) box becomes a ``min_size`` box at its clipped
    corner, so RoIAlign samples the feature there instead of returning zeros.

    Args:
        boxes (Tensor): (R, 4) xyxy in pixels.
        height (float), width (float): image size in pixels.
        min_size (float): minimum side in pixels after clipping.
    Returns:
        Tensor: (R, 4) float.
    """
    b = boxes.float()
    x1 = b[:, 0].clamp(0, width)
    y1 = b[:, 1].clamp(0, height)
    x2 = b[:, 2].clamp(0, width)
    y2 = b[:, 3].clamp(0, height)
    x2 = torch.maximum(x2, x1 + min_size)
    y2 = torch.maximum(y2, y1 + min_size)
    return torch.stack([x1, y1, x2, y2], dim=1)


def pool_boxes(
    dense: torch.Tensor,
    boxes: Sequence[BoxesLike],
    stride: float,
    clip: bool = True,
) -> torch.Tensor:
    """Region features by RoIAlign 1x1 on a dense map (docs/dense_features.md §5).

    ``torchvision.ops.roi_align(dense, boxes / stride, (1, 1), spatial_scale=1, sampling_ratio=-1,
    aligned=True)``: a bilinear average over the box with an adaptive number of samples. A box
    covering the whole image gives exactly the mean of the map. Boxes are clipped to the image
    (``clip=True``); zero-size and out-of-image boxes then sample the nearest feature.
    Features are not re-normalised.

    Args:
        dense (Tensor): (B, D, h, w) dense map.
        boxes (list[Tensor or Boxes]): B entries of (R_i, 4) xyxy boxes in input pixels.
        stride (float): input pixels per token (the patch size; may be fractional).
        clip (bool): clip boxes to the image ``(h*stride, w*stride)``.
    Returns:
        Tensor: (sum R_i, D) in the dtype of ``dense``.
    """
    from torchvision.ops import roi_align

    B, D, h, w = dense.shape
    if len(boxes) != B:
        raise ValueError(f"pool_boxes: got {len(boxes)} box lists for {B} images")
    rois = []
    for i, b in enumerate(boxes):
        b = _as_box_tensor(b).to(device=dense.device, dtype=torch.float32)
        if clip:
            b = clip_boxes_min_size(b, h * stride, w * stride)
        # to token units here (not via spatial_scale): 98 / 14 is exactly 7, 98 * (1/14) is not,
        # and RoIAlign's adaptive sample count is ceil(side)
        rois.append(torch.cat([b.new_full((b.shape[0], 1), float(i)), b / stride], dim=1))
    rois = torch.cat(rois, dim=0) if rois else dense.new_zeros((0, 5), dtype=torch.float32)
    if rois.shape[0] == 0:
        return dense.new_zeros((0, D))
    out = roi_align(
        dense.float(), rois, output_size=(1, 1), spatial_scale=1.0,
        sampling_ratio=-1, aligned=True,
    )  # (R, D, 1, 1)
    return out[:, :, 0, 0].to(dense.dtype)


def _bilinear_aligned(fmap: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """torchvision RoIAlign's bilinear sample of a (D, h, w) map at (y, x), with its borders."""
    D, h, w = fmap.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return fmap.new_zeros(D)
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    hy, hx = 1.0 - ly, 1.0 - lx
    return (
        hy * hx * fmap[:, y0, x0] + hy * lx * fmap[:, y0, x1]
        + ly * hx * fmap[:, y1, x0] + ly * lx * fmap[:, y1, x1]
    )


def pool_boxes_reference(
    dense: torch.Tensor, boxes: Sequence[BoxesLike], stride: float, clip: bool = True
) -> torch.Tensor:
    """Slow reference of :func:`pool_boxes`: a Python loop over regions and sample points.

    Written from RoIAlign's definition (aligned=True: half-pixel shift; adaptive sampling
    ``ceil(box side in tokens)`` points per axis). For tests and ``tools/benchmark.py --reference``.

    Args:
        dense (Tensor): (B, D, h, w). boxes (list[Tensor]): B entries of (R_i, 4) xyxy pixels.
        stride (float): pixels per token. clip (bool): as :func:`pool_boxes`.
    Returns:
        Tensor: (sum R_i, D).
    """
    B, D, h, w = dense.shape
    feats = []
    for i, b in enumerate(boxes):
        b = _as_box_tensor(b).float().cpu()
        if clip:
            b = clip_boxes_min_size(b, h * stride, w * stride)
        fmap = dense[i].float()
        for x1, y1, x2, y2 in b.tolist():
            x1, y1, x2, y2 = (v / stride - 0.5 for v in (x1, y1, x2, y2))
            rw, rh = x2 - x1, y2 - y1
            gw, gh = math.ceil(rw), math.ceil(rh)
            acc = fmap.new_zeros(D)
            for iy in range(gh):
                yy = y1 + (iy + 0.5) * rh / gh
                for ix in range(gw):
                    xx = x1 + (ix + 0.5) * rw / gw
                    acc = acc + _bilinear_aligned(fmap, yy, xx)
            feats.append(acc / max(gh * gw, 1))
    if not feats:
        return dense.new_zeros((0, D))
    return torch.stack(feats).to(dense.dtype)


def pool_masks(
    dense: torch.Tensor, masks: Union[Sequence[torch.Tensor], torch.Tensor], eps: float = 1e-12
) -> torch.Tensor:
    """Mask pooling ``f = sum_t m_t feat_t / (sum_t m_t + eps)``, not re-normalised: the thing
    and stuff masks of the region evaluation, the CLIP score of predicted masks and the panoptic
    class head's pooled mask features.

    Args:
        dense (Tensor): (B, D, h, w) dense map.
        masks (list[Tensor] or Tensor): B entries of (R_i, h, w) bool or float masks at the
            map's resolution (resize masks to the token grid first), or a (B, R, h, w) tensor.
        eps (float): added to the mask area (an empty mask gives a zero vector).
    Returns:
        Tensor: (sum R_i, D) in the dtype of ``dense``.
    """
    B, D, h, w = dense.shape
    if len(masks) != B:
        raise ValueError(f"pool_masks: got {len(masks)} mask lists for {B} images")
    if isinstance(masks, torch.Tensor) and masks.dim() == 4:
        if tuple(masks.shape[-2:]) != (h, w):
            raise ValueError(f"pool_masks: masks are {tuple(masks.shape[-2:])}, the feature map "
                             f"is {(h, w)}; resize the masks to the token grid first")
        weights = masks.to(dense.dtype)  # (B, R, h, w): one batched contraction
        summed = torch.einsum("brhw,bdhw->brd", weights, dense)  # (B, R, D)
        area = weights.sum(dim=(-2, -1))[..., None]  # (B, R, 1)
        return (summed / (area + eps)).flatten(0, 1)
    out = []
    for i, m in enumerate(masks):
        m = torch.as_tensor(m, device=dense.device)
        if m.numel() == 0:
            continue
        if m.ndim == 2:
            m = m[None]
        if tuple(m.shape[-2:]) != (h, w):
            raise ValueError(
                f"pool_masks: masks of image {i} are {tuple(m.shape[-2:])}, the feature map is "
                f"{(h, w)}; resize the masks to the token grid first"
            )
        m = m.reshape(m.shape[0], h * w).to(dense.dtype)  # (R_i, h*w)
        f = dense[i].reshape(D, h * w)  # (D, h*w)
        out.append((m @ f.t()) / (m.sum(dim=1, keepdim=True) + eps))  # (R_i, D)
    if not out:
        return dense.new_zeros((0, D))
    return torch.cat(out, dim=0)
