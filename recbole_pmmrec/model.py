"""PMMRec: items represented only by their text and images, a SASRec-style user encoder."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_pmmrec.item_encoder import ItemEncoder
from recbole_pmmrec.losses import inbatch_softmax_loss, next_item_targets, user_item_mask
from recbole_pmmrec.user_encoder import UserEncoder

LOSS_TYPES = ("inbatch", "CE")


class PMMRec(SequentialRecommender):
    r"""Pure multi-modality sequential recommender (Li et al., ICDE 2024).

    Item vectors come from the item encoder (text and/or image encoders + fusion); the user
    encoder reads the history's item vectors; scores are dot products. With ``loss_type:
    inbatch`` every position is trained against the batch's unique items (logQ-corrected,
    the user's own items masked out as negatives); with ``CE`` against all items.
    """

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.loss_type = config["loss_type"]
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES} for PMMRec, got {self.loss_type!r}")
        self.logq_correction = config["logq_correction"]
        self.mask_history_negatives = config["mask_history_negatives"]
        self.every_position = config["train_rows"] != "prefix"
        self.exclude_history_items = config["exclude_history_items"]
        self.eval_chunk_size = config["item_encode_batch_size"]
        self.initializer_range = config["initializer_range"]

        self.item_encoder = ItemEncoder(config, dataset.item_content)
        self.user_encoder = UserEncoder(config)
        counts = dataset.item_train_counts.clamp(min=1.0)
        self.register_buffer("log_q", (counts / counts.sum()).log(), persistent=False)
        for module in self.new_modules():
            module.apply(self._init_weights)
        self._all_item_cache = None

    def new_modules(self):
        """The modules trained from scratch (everything but the pre-trained backbones)."""
        modules = [self.user_encoder, self.item_encoder.fusion]
        for encoder in (self.item_encoder.text_encoder, self.item_encoder.image_encoder):
            if encoder is not None:
                modules.append(encoder.proj)
        return modules

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    # caches: item vectors of the whole catalogue, valid while the weights do not change
    def train(self, mode=True):
        self._all_item_cache = None
        return super().train(mode)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        self._all_item_cache = None
        self.item_encoder.clear_stale_caches(state_dict, prefix="item_encoder.")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def all_item_vectors(self):
        """``[n_items, d]`` vectors of every item (row 0, padding, is zero), computed once
        per evaluation pass and reused until the model trains again."""
        if self._all_item_cache is not None and not self.training:
            return self._all_item_cache
        ids = torch.arange(1, self.n_items, device=self.log_q.device)
        vectors = torch.cat([self.item_encoder(chunk).fused for chunk in ids.split(self.eval_chunk_size)])
        vectors = torch.cat([torch.zeros_like(vectors[:1]), vectors])
        if not self.training:
            self._all_item_cache = vectors
        return vectors

    # encoding
    def _unique_items(self, *id_tensors):
        """The batch's unique non-padding item ids and their vectors."""
        ids = torch.cat([t.flatten() for t in id_tensors])
        unique = torch.unique(ids[ids > 0])
        return unique, self.item_encoder(unique)

    @staticmethod
    def _index_in(unique, ids):
        """Index of each id in the sorted ``unique`` (-1 for padding id 0)."""
        index = torch.searchsorted(unique, ids.contiguous())
        return torch.where(ids > 0, index, torch.full_like(index, -1))

    def user_states(self, item_seq, seq_vectors):
        """Per-position user states ``[B, L, d]`` from the history's item vectors."""
        seq_vectors = seq_vectors * (item_seq > 0).unsqueeze(-1).to(seq_vectors.dtype)
        return self.user_encoder(seq_vectors, self.get_attention_mask(item_seq))

    def _gather_vectors(self, vectors, index):
        padded = torch.cat([vectors, torch.zeros_like(vectors[:1])])  # index -1 -> zeros
        return padded[index]

    def forward(self, item_seq, item_seq_len):
        """The user state after the last real item of each history, ``[B, d]``."""
        if not self.training:
            seq_vectors = self.all_item_vectors()[item_seq]
        else:
            unique, vectors = self._unique_items(item_seq)
            seq_vectors = self._gather_vectors(vectors.fused, self._index_in(unique, item_seq))
        states = self.user_states(item_seq, seq_vectors)
        return self.gather_indexes(states, item_seq_len - 1)

    # RecBole contract
    def calculate_loss(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        targets = next_item_targets(item_seq, item_seq_len, interaction[self.POS_ITEM_ID], self.every_position)
        valid = targets > 0
        if self.loss_type == "CE":
            all_vectors = self.all_item_vectors()
            states = self.user_states(item_seq, all_vectors[item_seq])
            logits = states[valid] @ all_vectors[1:].T
            return F.cross_entropy(logits, targets[valid] - 1)
        unique, vectors = self._unique_items(item_seq, targets)
        seq_index = self._index_in(unique, item_seq)
        states = self.user_states(item_seq, self._gather_vectors(vectors.fused, seq_index))
        labels = self._index_in(unique, targets)
        exclude = None
        if self.mask_history_negatives:
            per_user = user_item_mask(torch.cat([seq_index, labels], dim=1), len(unique))
            row_of_position = torch.arange(item_seq.shape[0], device=item_seq.device)
            exclude = per_user[row_of_position.unsqueeze(1).expand_as(targets)[valid]]
        log_q = self.log_q[unique] if self.logq_correction else None
        return inbatch_softmax_loss(states[valid], labels[valid], vectors.fused, log_q, exclude)

    def predict(self, interaction):
        user = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        items = self.all_item_vectors()[interaction[self.ITEM_ID]]
        return (user * items).sum(dim=-1)

    def full_sort_predict(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        user = self.forward(item_seq, interaction[self.ITEM_SEQ_LEN])
        scores = user @ self.all_item_vectors().T
        if self.exclude_history_items:
            scores = scores.scatter(1, item_seq, float("-inf"))
        return scores
