"""SASRec-style user encoder: learned positions + a causal transformer over item vectors."""

from dataclasses import dataclass

import torch
import torch.nn as nn
from recbole.model.layers import TransformerEncoder

from recbole_pmmrec.model.settings import ComponentSettings


@dataclass(frozen=True)
class UserEncoderSettings(ComponentSettings):
    hidden_size: int
    inner_size: int
    n_layers: int
    n_heads: int
    hidden_act: str
    layer_norm_eps: float
    MAX_ITEM_LIST_LENGTH: int


class UserEncoder(nn.Module):
    """Maps the item vectors of a history ``[B, L, d]`` to per-position user states ``[B, L, d]``;
    the state at position t is trained to score the item at t+1."""

    def __init__(self, settings: UserEncoderSettings, hidden_dropout, attn_dropout):
        super().__init__()
        hidden = settings.hidden_size
        self.position_embedding = nn.Embedding(settings.MAX_ITEM_LIST_LENGTH, hidden)
        self.layer_norm = nn.LayerNorm(hidden, eps=settings.layer_norm_eps)
        self.dropout = nn.Dropout(hidden_dropout)
        self.transformer = TransformerEncoder(
            n_layers=settings.n_layers,
            n_heads=settings.n_heads,
            hidden_size=hidden,
            inner_size=settings.inner_size,
            hidden_dropout_prob=hidden_dropout,
            attn_dropout_prob=attn_dropout,
            hidden_act=settings.hidden_act,
            layer_norm_eps=settings.layer_norm_eps,
        )

    def forward(self, item_vectors, item_seq, last=None):
        """Per-position states of histories ``item_seq`` ``[B, L]`` (0 = padding) whose item
        vectors are ``item_vectors`` ``[B, L, d]``; position t sees positions <= t only.
        Given ``last`` ``[B]`` (one position per history), only those positions' states
        ``[B, d]``: the top layer then computes just them (its keys and values still read
        every position), which is all that ranking a user's next item needs."""
        item_vectors = item_vectors * (item_seq > 0).unsqueeze(-1).to(item_vectors.dtype)
        positions = torch.arange(item_vectors.shape[1], device=item_vectors.device)
        hidden = self.dropout(self.layer_norm(item_vectors + self.position_embedding(positions)))
        mask = causal_mask(item_seq)
        layers = self.transformer.layer
        for layer in layers if last is None else layers[:-1]:
            hidden = layer(hidden, mask)
        return hidden if last is None else _layer_at(layers[-1], hidden, mask, last)


def _layer_at(layer, hidden, mask, positions):
    """RecBole's ``TransformerLayer`` computed at one position per row: ``[B, d]``, equal to
    ``layer(hidden, mask)[rows, positions]``."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    attention = layer.multi_head_attention
    query_input = hidden[rows, positions].unsqueeze(1)  # [B, 1, d]

    def heads(x):  # [B, T, d] -> [B, heads, T, head size]
        return x.view(*x.shape[:2], attention.num_attention_heads, attention.attention_head_size).transpose(1, 2)

    scores = heads(attention.query(query_input)) @ heads(attention.key(hidden)).transpose(-1, -2)
    scores = scores / attention.sqrt_attention_head_size + mask[rows, :, positions].unsqueeze(2)
    probs = attention.attn_dropout(attention.softmax(scores))
    context = (probs @ heads(attention.value(hidden))).transpose(1, 2).reshape(query_input.shape)
    attended = attention.LayerNorm(attention.out_dropout(attention.dense(context)) + query_input)
    return layer.feed_forward(attended).squeeze(1)


def causal_mask(item_seq):
    """The additive attention mask of a history ``[B, L]``: ``[B, 1, L, L]``, 0 where a
    position may attend (an earlier or the same real item), -10000 elsewhere (as RecBole's
    ``get_attention_mask``)."""
    allowed = (item_seq != 0).unsqueeze(1).unsqueeze(2).expand(-1, -1, item_seq.size(-1), -1)
    return torch.where(torch.tril(allowed), 0.0, -10000.0)
