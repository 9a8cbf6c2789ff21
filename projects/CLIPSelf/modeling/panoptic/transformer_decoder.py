"""Mask2Former's masked-attention transformer decoder with an open-vocabulary class head
(docs/segmentation.md §2-§4).

Shape shorthand in this module:
    B: images, Q: queries, C: decoder width (``hidden_dim``), E: ``mask_dim`` (channels of
    ``mask_features``), H/W: ``mask_features`` size (stride 4), h_l/w_l: size of memory level l,
    S_l = h_l * w_l, K: classes of the current vocabulary (the no-object class is index K),
    D_text: text-embedding width, D: joint embedding width (``embed_dim``), M: attention heads.

Decoder: ``dec_layers`` layers of masked cross-attention -> self-attention -> FFN, cycling over
the memory levels (coarse to fine). Predictions (class logits + mask logits) are made from the
LayerNorm-ed queries before the first layer and after each layer (``dec_layers + 1`` sets; the
last is the output, the others are ``aux_outputs``). The cross-attention of layer i only sees
the locations of its level where the previous prediction's mask, resized there, has
``sigmoid >= 0.5``; a query whose mask has no such location sees the whole level.

Class head (ODISE label model, :class:`OpenVocabClassHead`): the mask-pooled pixel features of
each query are added to its decoder output, embedded and compared by cosine with the projected
category text embeddings; a learnable null embedding gives the last, "no object", logit.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from torch import nn

from ...structures import cosine_logits
from ..dense_ops import pool_masks
from .pixel_decoder import position_embedding_sine

__all__ = [
    "attention_mask_from_masks",
    "MLP",
    "CrossAttentionLayer",
    "SelfAttentionLayer",
    "FFNLayer",
    "OpenVocabClassHead",
    "MultiScaleMaskedTransformerDecoder",
]


# ---------------------------------------------------------------------------- pure functions
def attention_mask_from_masks(
    masks: torch.Tensor, size: Tuple[int, int], nheads: int
) -> torch.Tensor:
    """Masked-attention mask of the next cross-attention layer.

    The mask logits are resized (bilinear, ``align_corners=False``) to the memory level's size;
    a location is blocked where ``sigmoid < 0.5``. Rows with every location blocked are fully
    unblocked (the query then attends to the whole level). The result is detached and repeated
    per head in ``nn.MultiheadAttention``'s order (index ``b * nheads + m``).

    Args:
        masks (Tensor): (B, Q, H, W) mask logits.
        size (tuple[int, int]): (h, w) of the memory level.
        nheads (int): attention heads M.
    Returns:
        Tensor: (B * M, Q, h * w) bool, True = attention not allowed.
    """
    resized = F.interpolate(
        masks.detach().float(), size=tuple(size), mode="bilinear", align_corners=False
    )  # (B, Q, h, w)
    blocked = resized.sigmoid().flatten(2) < 0.5  # (B, Q, h*w)
    fully_blocked = blocked.all(dim=-1, keepdim=True)  # (B, Q, 1)
    blocked = blocked & ~fully_blocked
    return blocked.repeat_interleave(nheads, dim=0)  # (B*M, Q, h*w)


# ---------------------------------------------------------------------------- building blocks
class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU in between (none after the last)."""

    def __init__(self, *, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        """
        Args:
            input_dim (int): input width. hidden_dim (int): width of the hidden layers.
            output_dim (int): output width. num_layers (int): number of linear layers (>= 1).
        """
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP: num_layers must be >= 1, got {num_layers}")
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., input_dim) -> (..., output_dim)."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x


def _xavier_matrices(module: nn.Module):
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class CrossAttentionLayer(nn.Module):
    """Queries attend to one memory level (q = tgt + query_pos, k = memory + pos, v = memory)."""

    def __init__(
        self, *, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False
    ):
        """
        Args:
            d_model (int): width C. nhead (int): heads M. dropout (float): attention/residual
                dropout. normalize_before (bool): pre-norm instead of post-norm.
        """
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_matrices(self)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        *,
        attn_mask: Optional[torch.Tensor] = None,
        pos: Optional[torch.Tensor] = None,
        query_pos: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """
        Args:
            tgt (Tensor): (B, Q, C) queries. memory (Tensor): (B, S_l, C).
            attn_mask (Tensor or None): (B * M, Q, S_l) bool, True = not allowed.
            pos (Tensor or None): (B, S_l, C). query_pos (Tensor or None): (B, Q, C).
        Returns:
            Tensor: (B, Q, C).
        """
        q = self.norm(tgt) if self.normalize_before else tgt
        q = q if query_pos is None else q + query_pos
        k = memory if pos is None else memory + pos
        out = self.attn(q, k, memory, attn_mask=attn_mask, need_weights=False)[0]
        tgt = tgt + self.dropout(out)
        return tgt if self.normalize_before else self.norm(tgt)


class SelfAttentionLayer(nn.Module):
    """Self-attention among queries (q = k = tgt + query_pos, v = tgt)."""

    def __init__(
        self, *, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False
    ):
        """Arguments as :class:`CrossAttentionLayer`."""
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_matrices(self)

    def forward(self, tgt: torch.Tensor, *, query_pos: Optional[torch.Tensor] = None):
        """tgt: (B, Q, C), query_pos: (B, Q, C) or None -> (B, Q, C)."""
        x = self.norm(tgt) if self.normalize_before else tgt
        qk = x if query_pos is None else x + query_pos
        out = self.attn(qk, qk, x, need_weights=False)[0]
        tgt = tgt + self.dropout(out)
        return tgt if self.normalize_before else self.norm(tgt)


class FFNLayer(nn.Module):
    """Residual ReLU feed-forward block."""

    def __init__(
        self,
        *,
        d_model: int,
        dim_feedforward: int,
        dropout: float = 0.0,
        normalize_before: bool = False,
    ):
        """
        Args:
            d_model (int): width C. dim_feedforward (int): hidden width. dropout (float):
                dropout inside and after the block. normalize_before (bool): pre-norm.
        """
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_matrices(self)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        """tgt: (B, Q, C) -> (B, Q, C)."""
        x = self.norm(tgt) if self.normalize_before else tgt
        tgt = tgt + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x)))))
        return tgt if self.normalize_before else self.norm(tgt)


# ---------------------------------------------------------------------------- class head
class OpenVocabClassHead(nn.Module):
    """ODISE's label-model classifier: ``PooledMaskEmbed`` + ``CategoryEmbed``
    (docs/segmentation.md §4).

    For query q with decoder output ``dec_q`` and mask logits ``mask_q``:
        ``pool_q = pool_masks(mask_features, sigmoid(mask_q) > 0.5)`` (detached mask),
        ``z_q = Linear(LN(pool_q)) + dec_q``, ``e_q = MLP3(LN(z_q))`` (D),
        ``logit_{q,k} = s * cos(e_q, text_proj(t_k))`` for the K classes, then the null embedding
        (projected the same way) as the last logit; ``s = exp(logit_scale)`` clamped to
        ``<= max_logit_scale``. Synonyms are the caller's business: pass one (K, D_text) row
        per class.
    """

    def __init__(
        self,
        *,
        hidden_dim: int,
        mask_dim: int,
        text_dim: int,
        embed_dim: int = 256,
        null_init: Optional[torch.Tensor] = None,
        logit_scale_init: float = 1 / 0.07,
        max_logit_scale: float = 100.0,
        normalize_text: bool = False,
    ):
        """
        Args:
            hidden_dim (int): decoder width C.
            mask_dim (int): channels E of ``mask_features``.
            text_dim (int): width D_text of the text embeddings (768 for CLIP ViT-L/14).
            embed_dim (int): joint embedding width D.
            null_init (Tensor or None): (D_text,) initial null ("no object") embedding; ODISE
                uses the CLIP text embedding of ``""``. None: ``0.02 * randn``.
            logit_scale_init (float): initial ``s`` (stored as its log).
            max_logit_scale (float): upper clamp of ``s``.
            normalize_text (bool): L2-normalise the text and null embeddings before
                ``text_proj`` (False = use them as given, like ODISE's unnormalised
                ``encode_text``).
        """
        super().__init__()
        self.hidden_dim = hidden_dim
        self.mask_dim = mask_dim
        self.text_dim = text_dim
        self.embed_dim = embed_dim
        self.max_logit_scale = max_logit_scale
        self.normalize_text = normalize_text
        self.pool_norm = nn.LayerNorm(mask_dim)
        self.pool_proj = nn.Linear(mask_dim, hidden_dim)
        self.embed_norm = nn.LayerNorm(hidden_dim)
        self.embed_mlp = MLP(
            input_dim=hidden_dim, hidden_dim=hidden_dim, output_dim=embed_dim, num_layers=3
        )
        self.text_proj = nn.Linear(text_dim, embed_dim)
        if null_init is None:
            null_init = 0.02 * torch.randn(text_dim)
        null_init = torch.as_tensor(null_init, dtype=torch.float32).detach().clone().reshape(-1)
        if null_init.numel() != text_dim:
            raise ValueError(f"null_init has {null_init.numel()} values, text_dim is {text_dim}")
        self.null_embed = nn.Parameter(null_init)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(logit_scale_init)))

    def scale(self) -> torch.Tensor:
        """The logit scale ``min(exp(logit_scale), max_logit_scale)`` (scalar tensor)."""
        return self.logit_scale.exp().clamp(max=self.max_logit_scale)

    def class_embeddings(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        """Projected text embeddings with the null one appended last.

        Args:
            text_embeddings (Tensor): (K, D_text).
        Returns:
            Tensor: (K + 1, D).
        """
        if text_embeddings.dim() != 2 or text_embeddings.shape[1] != self.text_dim:
            raise ValueError(
                f"text_embeddings must be (K, {self.text_dim}), got {tuple(text_embeddings.shape)}"
            )
        text = torch.cat(
            [text_embeddings.to(self.null_embed), self.null_embed[None]], dim=0
        )  # (K+1, D_text)
        if self.normalize_text:
            text = F.normalize(text, dim=-1)
        return self.text_proj(text)

    def forward(
        self,
        decoder_output: torch.Tensor,
        mask_pred: torch.Tensor,
        mask_features: torch.Tensor,
        text_embeddings: torch.Tensor,
    ) -> torch.Tensor:
        """
        Args:
            decoder_output (Tensor): (B, Q, C) normalised decoder output.
            mask_pred (Tensor): (B, Q, H', W') mask logits; resized (bilinear) to H, W if needed.
            mask_features (Tensor): (B, E, H, W).
            text_embeddings (Tensor): (K, D_text), one row per class.
        Returns:
            Tensor: (B, Q, K + 1) logits, the no-object logit last.
        """
        with torch.no_grad():
            m = mask_pred.detach()
            if m.shape[-2:] != mask_features.shape[-2:]:
                m = F.interpolate(
                    m.float(), size=mask_features.shape[-2:], mode="bilinear", align_corners=False
                )
            binary = m.sigmoid() > 0.5  # (B, Q, H, W)
        B, Q = binary.shape[:2]
        pooled = pool_masks(mask_features, binary, eps=1e-8).reshape(B, Q, -1)  # (B, Q, E)
        z = self.pool_proj(self.pool_norm(pooled)) + decoder_output  # (B, Q, C)
        e = self.embed_mlp(self.embed_norm(z))  # (B, Q, D)
        return cosine_logits(e, self.class_embeddings(text_embeddings), self.scale())

    def extra_repr(self) -> str:
        return (
            f"hidden_dim={self.hidden_dim}, mask_dim={self.mask_dim}, text_dim={self.text_dim}, "
            f"embed_dim={self.embed_dim}, max_logit_scale={self.max_logit_scale}, "
            f"normalize_text={self.normalize_text}"
        )


# ---------------------------------------------------------------------------- decoder
class MultiScaleMaskedTransformerDecoder(nn.Module):
    """Mask2Former's masked-attention decoder with a swappable class head (docs/segmentation.md
    §3.3)."""

    def __init__(
        self,
        *,
        in_channels: int = 256,
        hidden_dim: int = 256,
        num_queries: int = 100,
        nheads: int = 8,
        dim_feedforward: int = 2048,
        dec_layers: int = 9,
        pre_norm: bool = False,
        mask_dim: int = 256,
        num_feature_levels: int = 3,
        enforce_input_project: bool = False,
        class_head: nn.Module,
        dropout: float = 0.0,
    ):
        """
        Args:
            in_channels (int): channels of the multi-scale features.
            hidden_dim (int): decoder width C (even: sine positional encoding).
            num_queries (int): Q.
            nheads (int): attention heads M.
            dim_feedforward (int): FFN hidden width.
            dec_layers (int): decoder layers (>= 1); ``dec_layers + 1`` prediction sets.
            pre_norm (bool): pre-norm layers (Mask2Former default: post-norm).
            mask_dim (int): channels E of ``mask_features`` and of the mask embedding.
            num_feature_levels (int): memory levels, used round-robin (coarse first).
            enforce_input_project (bool): 1x1 conv input projection even when
                ``in_channels == hidden_dim`` (otherwise identity).
            class_head (nn.Module): ``class_head(decoder_output (B, Q, C), mask_pred
                (B, Q, H, W), mask_features (B, E, H, W), text_embeddings) -> (B, Q, K + 1)``,
                e.g. :class:`OpenVocabClassHead`; shared by all prediction sets.
            dropout (float): dropout of every layer (spec: 0).
        """
        super().__init__()
        if dec_layers < 1:
            raise ValueError(f"dec_layers must be >= 1, got {dec_layers}")
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even (sine encoding), got {hidden_dim}")
        for name, want in (("hidden_dim", hidden_dim), ("mask_dim", mask_dim)):
            got = getattr(class_head, name, want)
            if got != want:
                raise ValueError(f"class_head.{name}={got} but the decoder's {name} is {want}")
        self.hidden_dim = hidden_dim
        self.num_queries = num_queries
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.mask_dim = mask_dim
        self.num_feature_levels = num_feature_levels

        self.query_feat = nn.Embedding(num_queries, hidden_dim)  # learnable query features
        self.query_embed = nn.Embedding(num_queries, hidden_dim)  # learnable query positions
        self.level_embed = nn.Embedding(num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(num_feature_levels):
            if in_channels != hidden_dim or enforce_input_project:
                proj = nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
                weight_init.c2_xavier_fill(proj)
                self.input_proj.append(proj)
            else:
                self.input_proj.append(nn.Identity())

        layer_kw = dict(d_model=hidden_dim, dropout=dropout, normalize_before=pre_norm)
        self.cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(nhead=nheads, **layer_kw) for _ in range(dec_layers)
        )
        self.self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(nhead=nheads, **layer_kw) for _ in range(dec_layers)
        )
        self.ffn_layers = nn.ModuleList(
            FFNLayer(dim_feedforward=dim_feedforward, **layer_kw) for _ in range(dec_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.mask_embed = MLP(
            input_dim=hidden_dim, hidden_dim=hidden_dim, output_dim=mask_dim, num_layers=3
        )
        self.class_head = class_head

    def _memory(
        self, multi_scale_features: Sequence[torch.Tensor]
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor], List[Tuple[int, int]]]:
        """Projected memory + level embedding, sine positions and sizes of every level.

        Returns:
            tuple: srcs (list of (B, S_l, C)), pos (list of (B, S_l, C)), sizes [(h_l, w_l)].
        """
        srcs, poss, sizes = [], [], []
        for lvl, x in enumerate(multi_scale_features):
            batch, _, h, w = x.shape
            sizes.append((int(h), int(w)))
            pos = position_embedding_sine((h, w), self.hidden_dim // 2, device=x.device)
            poss.append(pos.to(x.dtype).flatten(2).transpose(1, 2).expand(batch, -1, -1))
            src = self.input_proj[lvl](x).flatten(2) + self.level_embed.weight[lvl][None, :, None]
            srcs.append(src.transpose(1, 2))  # (B, S_l, C)
        return srcs, poss, sizes

    def forward_prediction_heads(
        self,
        output: torch.Tensor,
        mask_features: torch.Tensor,
        text_embeddings: torch.Tensor,
        attn_size: Optional[Tuple[int, int]],
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Class logits, mask logits and the next layer's attention mask.

        Args:
            output (Tensor): (B, Q, C) decoder queries (before the final LayerNorm).
            mask_features (Tensor): (B, E, H, W).
            text_embeddings (Tensor): (K, D_text).
            attn_size (tuple or None): (h, w) of the next layer's memory level; None = no
                attention mask needed.
        Returns:
            tuple: logits (B, Q, K + 1), masks (B, Q, H, W), attn_mask (B * M, Q, h * w) bool
            or None.
        """
        decoder_output = self.decoder_norm(output)  # (B, Q, C)
        mask_embed = self.mask_embed(decoder_output)  # (B, Q, E)
        masks = torch.einsum("bqc,bchw->bqhw", mask_embed, mask_features)  # (B, Q, H, W)
        logits = self.class_head(decoder_output, masks, mask_features, text_embeddings)
        attn_mask = None
        if attn_size is not None:
            attn_mask = attention_mask_from_masks(masks, attn_size, self.num_heads)
        return logits, masks, attn_mask

    def forward(
        self,
        multi_scale_features: Sequence[torch.Tensor],
        mask_features: torch.Tensor,
        text_embeddings: torch.Tensor,
    ) -> Dict[str, object]:
        """
        Args:
            multi_scale_features (list[Tensor]): ``num_feature_levels`` maps (B, in_channels,
                h_l, w_l), coarse to fine (the pixel decoder's third output).
            mask_features (Tensor): (B, E, H, W) per-pixel embeddings.
            text_embeddings (Tensor): (K, D_text) class text embeddings.
        Returns:
            dict: "pred_logits" (B, Q, K + 1), "pred_masks" (B, Q, H, W) logits of the last
            layer, and "aux_outputs": ``dec_layers`` dicts with the same keys (the query
            init, then layers 1 .. dec_layers - 1).
        """
        if len(multi_scale_features) != self.num_feature_levels:
            raise ValueError(
                f"expected {self.num_feature_levels} feature levels, "
                f"got {len(multi_scale_features)}"
            )
        srcs, poss, sizes = self._memory(multi_scale_features)
        batch = mask_features.shape[0]
        query_pos = self.query_embed.weight[None].expand(batch, -1, -1)  # (B, Q, C)
        output = self.query_feat.weight[None].expand(batch, -1, -1)  # (B, Q, C)

        logits, masks, attn_mask = self.forward_prediction_heads(
            output, mask_features, text_embeddings, sizes[0]
        )
        predictions = [{"pred_logits": logits, "pred_masks": masks}]
        for i in range(self.num_layers):
            lvl = i % self.num_feature_levels
            output = self.cross_attention_layers[i](
                output, srcs[lvl], attn_mask=attn_mask, pos=poss[lvl], query_pos=query_pos
            )
            output = self.self_attention_layers[i](output, query_pos=query_pos)
            output = self.ffn_layers[i](output)
            last = i == self.num_layers - 1
            next_size = None if last else sizes[(i + 1) % self.num_feature_levels]
            logits, masks, attn_mask = self.forward_prediction_heads(
                output, mask_features, text_embeddings, next_size
            )
            predictions.append({"pred_logits": logits, "pred_masks": masks})
        out = dict(predictions[-1])
        out["aux_outputs"] = predictions[:-1]
        return out

    def extra_repr(self) -> str:
        return (
            f"num_queries={self.num_queries}, num_heads={self.num_heads}, "
            f"num_layers={self.num_layers}, num_feature_levels={self.num_feature_levels}"
        )
