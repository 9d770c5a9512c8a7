"""Fusion of projected text and image token states into one item vector.

Every fusion takes ``(text_tokens, text_mask, image_tokens, image_mask)`` with tokens
``[N, T, d]`` and masks ``[N, T]`` (a missing modality has an all-zero mask, or is None in a
single-modality model) and returns ``[N, d]``.
"""

from dataclasses import dataclass

import torch
import torch.nn as nn

from recbole_pmmrec.model.settings import ComponentSettings

FUSIONS = ("merge_attention", "sum", "concat")


@dataclass(frozen=True)
class FusionSettings(ComponentSettings):
    fusion: str
    fusion_n_heads: int
    modality_type_embedding: bool
    fusion_norm_first: bool
    fusion_image_grid: int
    fusion_text_tokens: int
    hidden_size: int
    layer_norm_eps: float


def pool_patch_grid(states, grid):
    """Image token states ``[N, 1 + P, H]`` (a leading class token, then a square grid of P
    patch tokens) with the patches average-pooled to a ``grid x grid`` grid: ``[N, 1 +
    grid^2, H]``. ``grid`` 0 keeps every token; pooling an already pooled grid changes nothing."""
    side = int(round((states.shape[1] - 1) ** 0.5))
    if not grid or side * side != states.shape[1] - 1 or side <= grid:
        return states
    patches = states[:, 1:].transpose(1, 2).reshape(states.shape[0], states.shape[2], side, side)
    pooled = torch.nn.functional.adaptive_avg_pool2d(patches, grid).flatten(2).transpose(1, 2)
    return torch.cat([states[:, :1], pooled], dim=1)


def pool_text_segments(states, mask, segments):
    """Text token states ``[N, T, H]`` with their mask ``[N, T]`` (real tokens first) with
    each text's tokens average-pooled into at most ``segments`` contiguous runs of nearly
    equal length: ``([N, S, H], [N, S])``, S = min(T, segments); a text of n < segments
    tokens keeps them as they are (n runs of one). ``segments`` 0 keeps every token."""
    if not segments or states.shape[1] <= segments:
        return states, mask
    lengths = mask.sum(dim=1, keepdim=True).clamp(min=1)
    positions = torch.arange(states.shape[1], device=states.device).unsqueeze(0)
    segment = torch.where(mask > 0, positions * segments // lengths, segments)  # padding -> a dropped slot
    sums = states.new_zeros(states.shape[0], segments + 1, states.shape[2])
    sums = sums.scatter_add(1, segment.unsqueeze(-1).expand_as(states), states)[:, :segments]
    counts = torch.zeros_like(sums[..., 0]).scatter_add(1, segment.clamp(max=segments - 1),
                                                        (mask > 0).to(states.dtype))
    return sums / counts.clamp(min=1).unsqueeze(-1), (counts > 0).to(mask.dtype)


def masked_mean(tokens, mask):
    """Mean of ``tokens`` over positions where ``mask`` is 1; zeros where the mask is empty."""
    mask = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class PooledFusion(nn.Module):
    """A fusion of the modalities' mean-pooled vectors. Because the projections are affine,
    the item encoder can pool the backbone states first and project once per item
    (:meth:`combine`), which gives the same vectors as pooling projected tokens."""

    needs_tokens = False

    def forward(self, text_tokens, text_mask, image_tokens, image_mask):
        text = masked_mean(text_tokens, text_mask) if text_tokens is not None else None
        image = masked_mean(image_tokens, image_mask) if image_tokens is not None else None
        return self.combine(text, image)

    def combine(self, text, image):
        raise NotImplementedError


class MeanPoolFusion(PooledFusion):
    """Single-modality items: the masked mean of the one modality's tokens."""

    def combine(self, text, image):
        return text if text is not None else image


class MergeAttentionFusion(nn.Module):
    """Concatenate text and image tokens, one transformer block, masked mean pool.

    A learned modality-type embedding tells the block which tokens are text and which image.
    ``norm_first=False`` is the authors' post-LN block; pre-LN is the default because the
    post-LN block collapsed to identical item vectors in our small-data tests.
    """

    needs_tokens = True

    def __init__(self, hidden_size, n_heads, dropout, layer_norm_eps, type_embedding=True, norm_first=True):
        super().__init__()
        self.block = nn.TransformerEncoderLayer(
            d_model=hidden_size,
            nhead=n_heads,
            dim_feedforward=4 * hidden_size,
            dropout=dropout,
            activation="gelu",
            layer_norm_eps=layer_norm_eps,
            batch_first=True,
            norm_first=norm_first,
        )
        self.type_embedding = nn.Embedding(2, hidden_size) if type_embedding else None

    def forward(self, text_tokens, text_mask, image_tokens, image_mask):
        if self.type_embedding is not None:
            text_tokens = text_tokens + self.type_embedding.weight[0]
            image_tokens = image_tokens + self.type_embedding.weight[1]
        tokens = torch.cat([text_tokens, image_tokens], dim=1)
        mask = torch.cat([text_mask, image_mask], dim=1)
        # an item with neither modality would give an all-masked row (NaN in attention)
        empty = mask.sum(dim=1) == 0
        attend = mask.bool() | empty.unsqueeze(1)
        fused = self.block(tokens, src_key_padding_mask=~attend)
        return masked_mean(fused, mask)


class SumFusion(PooledFusion):
    """Sum of the two modalities' mean-pooled vectors."""

    def combine(self, text, image):
        return text + image


class ConcatFusion(PooledFusion):
    """Linear map of the concatenated mean-pooled vectors."""

    def __init__(self, hidden_size):
        super().__init__()
        self.linear = nn.Linear(2 * hidden_size, hidden_size)

    def combine(self, text, image):
        return self.linear(torch.cat([text, image], dim=-1))


def build_fusion(settings: FusionSettings, n_modalities, dropout):
    """The fusion module named by ``settings.fusion`` (mean pooling for one modality)."""
    if n_modalities == 1:
        return MeanPoolFusion()
    if settings.fusion == "merge_attention":
        return MergeAttentionFusion(
            settings.hidden_size,
            settings.fusion_n_heads,
            dropout,
            settings.layer_norm_eps,
            settings.modality_type_embedding,
            settings.fusion_norm_first,
        )
    if settings.fusion == "sum":
        return SumFusion()
    if settings.fusion == "concat":
        return ConcatFusion(settings.hidden_size)
    raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {settings.fusion!r}")
