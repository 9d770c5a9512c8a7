"""SASRec-style user encoder: learned positions + a causal transformer over item vectors."""

import torch
import torch.nn as nn
from recbole.model.layers import TransformerEncoder


class UserEncoder(nn.Module):
    """Maps the item vectors of a history ``[B, L, d]`` to per-position user states ``[B, L, d]``;
    the state at position t is trained to score the item at t+1."""

    def __init__(self, config):
        super().__init__()
        hidden = config["hidden_size"]
        self.position_embedding = nn.Embedding(config["MAX_ITEM_LIST_LENGTH"], hidden)
        self.layer_norm = nn.LayerNorm(hidden, eps=config["layer_norm_eps"])
        self.dropout = nn.Dropout(config["hidden_dropout_prob"])
        self.transformer = TransformerEncoder(
            n_layers=config["n_layers"],
            n_heads=config["n_heads"],
            hidden_size=hidden,
            inner_size=config["inner_size"],
            hidden_dropout_prob=config["hidden_dropout_prob"],
            attn_dropout_prob=config["attn_dropout_prob"],
            hidden_act=config["hidden_act"],
            layer_norm_eps=config["layer_norm_eps"],
        )

    def forward(self, item_vectors, attention_mask):
        """``attention_mask`` is RecBole's extended causal mask (``get_attention_mask``)."""
        positions = torch.arange(item_vectors.shape[1], device=item_vectors.device)
        hidden = self.dropout(self.layer_norm(item_vectors + self.position_embedding(positions)))
        return self.transformer(hidden, attention_mask, output_all_encoded_layers=False)[-1]
