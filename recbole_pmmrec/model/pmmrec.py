"""PMMRec: items represented only by their text and images, a SASRec-style user encoder."""

from dataclasses import dataclass, replace
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_pmmrec.distributed import gather_rows, world_size
from recbole_pmmrec.model.item_encoder import ItemEncoder, ItemVectors
from recbole_pmmrec.model.losses import inbatch_softmax_loss, next_item_targets, user_item_mask
from recbole_pmmrec.model.user_encoder import UserEncoder, UserEncoderSettings
from recbole_pmmrec.transfer import build_manifest, load_components, parse_components, transfer_source

LOSS_TYPES = ("inbatch", "CE")


@dataclass
class TrainBatch:
    """One encoded training batch (see :meth:`PMMRec.encode_batch`)."""

    item_seq: torch.Tensor  # [B, L] item ids, 0 = padding
    item_seq_len: torch.Tensor  # [B]
    targets: torch.Tensor  # [B, L] next item of each position, 0 = unsupervised
    unique: torch.Tensor  # [U] the batch's unique item ids (sorted)
    vectors: ItemVectors  # their vectors
    seq_index: torch.Tensor  # [B, L] index into unique, -1 = padding
    target_index: torch.Tensor  # [B, L] index into unique, -1 = none
    states: torch.Tensor  # [B, L, d] user states
    noisy_states: Optional[torch.Tensor] = None  # [B, L, d] user states of the corrupted sequences

    def row_of_position(self):
        return torch.arange(self.item_seq.shape[0], device=self.item_seq.device).unsqueeze(1).expand_as(self.targets)

    def user_items(self):
        """``[B, U]``: which unique items occur in each row (history or targets)."""
        return user_item_mask(torch.cat([self.seq_index, self.target_index], dim=1), len(self.unique))

    def last_states(self, states):
        return states[torch.arange(states.shape[0], device=states.device), self.item_seq_len - 1]


class PMMRec(SequentialRecommender):
    r"""Pure multi-modality sequential recommender (Li et al., ICDE 2024).

    Item vectors come from the item encoder (text and/or image encoders + fusion); the user
    encoder reads the history's item vectors; scores are dot products. With ``loss_type:
    inbatch`` every position is trained against the batch's unique items (logQ-corrected,
    the user's own items masked out as negatives); with ``CE`` against all items.
    With ``transfer_from``, the components named by ``transfer`` start from a checkpoint.
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
        self.eval_chunk_size = config["item_encode_batch_size"]
        self.initializer_range = config["initializer_range"]

        self.item_encoder = ItemEncoder(config, dataset.item_content)
        self.user_encoder = UserEncoder(
            UserEncoderSettings.from_config(config), config["hidden_dropout_prob"], config["attn_dropout_prob"]
        )
        # noised item detection head: per-position clean / shuffled / replaced (or clean / noised)
        self.nid_head = None
        if config["nid_weight"]:
            if config["nid_classes"] not in (2, 3):
                raise ValueError(f"nid_classes must be 2 or 3, got {config['nid_classes']}")
            self.nid_head = nn.Linear(config["hidden_size"], config["nid_classes"])
        counts = dataset.item_train_counts
        # the items that occur in training: NID draws its replacement items from them
        self.register_buffer("train_items", torch.nonzero(counts > 0).squeeze(1), persistent=False)
        counts = counts.clamp(min=1.0)
        self.register_buffer("log_q", (counts / counts.sum()).log(), persistent=False)
        for module in self.new_modules():
            module.apply(self._init_weights)
        if config["transfer_from"]:
            load_components(self, config, transfer_source(config), parse_components(config["transfer"]))
        # saved in every checkpoint by RecBole's trainer (other_parameter): what a transfer needs
        self.other_parameter_name = ["transfer_manifest"]
        self.transfer_manifest = build_manifest(self, config)
        self._all_item_cache = None

    @property
    def modalities(self):
        return self.item_encoder.modalities

    def new_modules(self):
        """The modules trained from scratch (everything but the pre-trained backbones)."""
        modules = [self.user_encoder, self.item_encoder.fusion]
        if self.nid_head is not None:
            modules.append(self.nid_head)
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

    def user_states(self, item_seq, seq_vectors, last=None):
        """Per-position user states ``[B, L, d]`` from the history's item vectors (given
        ``last`` ``[B]``, only those positions' states ``[B, d]``)."""
        return self.user_encoder(seq_vectors, item_seq, last)

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
        return self.user_states(item_seq, seq_vectors, last=item_seq_len - 1)

    # training
    def encode_batch(self, interaction, noisy_seq=None):
        """Encode a training batch once for every objective: the unique items' vectors, the
        per-position user states and targets, and (given ``noisy_seq``, a corrupted copy of
        the histories ``[B, L]``) the user states of the corrupted histories.

        The candidates (``unique``, ``vectors``) are the items of the histories and targets
        only: the items a corrupted copy brings in are encoded for its states but never
        become negatives, so switching NID or RCL on leaves the other objectives' candidate
        pools as they are."""
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        targets = next_item_targets(item_seq, item_seq_len, interaction[self.POS_ITEM_ID], self.every_position)
        encoded, vectors = self._unique_items(*(t for t in (item_seq, targets, noisy_seq) if t is not None))
        unique = torch.unique(torch.cat([item_seq[item_seq > 0], targets[targets > 0]]))
        rows = torch.searchsorted(encoded, unique)
        candidates = ItemVectors(*(None if v is None else v[rows] for v in vectors))
        seq_index = self._index_in(unique, item_seq)
        batch = TrainBatch(
            item_seq=item_seq,
            item_seq_len=item_seq_len,
            targets=targets,
            unique=unique,
            vectors=candidates,
            seq_index=seq_index,
            target_index=self._index_in(unique, targets),
            states=self.user_states(item_seq, self._gather_vectors(candidates.fused, seq_index)),
        )
        if noisy_seq is not None:
            noisy_index = self._index_in(encoded, noisy_seq)
            batch.noisy_states = self.user_states(noisy_seq, self._gather_vectors(vectors.fused, noisy_index))
        return self._candidates_of_every_rank(batch) if world_size() > 1 else batch

    @staticmethod
    def _candidates_of_every_rank(batch):
        """In a distributed run: the batch with the candidates of every rank's batch (as one
        process would see the concatenated batch): the unique items of all ranks, each with
        the vectors (and gradients) of the first rank that has it, and this rank's indices
        remapped into them. The user states stay this rank's own."""
        all_ids, offset = gather_rows(batch.unique)
        unique, inverse = torch.unique(all_ids, return_inverse=True)
        positions = torch.arange(len(all_ids), device=all_ids.device)
        first = torch.full_like(unique, len(all_ids)).scatter_reduce(0, inverse, positions, "amin")
        local = inverse[offset: offset + len(batch.unique)]
        return replace(
            batch,
            unique=unique,
            vectors=ItemVectors(*(None if v is None else gather_rows(v)[0][first] for v in batch.vectors)),
            seq_index=torch.where(batch.seq_index >= 0, local[batch.seq_index.clamp(min=0)], -1),
            target_index=torch.where(batch.target_index >= 0, local[batch.target_index.clamp(min=0)], -1),
        )

    def recommendation_loss(self, batch):
        """Next-item loss of every supervised position (in-batch or full softmax)."""
        valid = batch.targets > 0
        if self.loss_type == "CE":
            logits = batch.states[valid] @ self.all_item_vectors()[1:].T
            return F.cross_entropy(logits, batch.targets[valid] - 1)
        exclude = None
        if self.mask_history_negatives:
            exclude = batch.user_items()[batch.row_of_position()[valid]]
        log_q = self.log_q[batch.unique] if self.logq_correction else None
        return inbatch_softmax_loss(batch.states[valid], batch.target_index[valid], batch.vectors.fused, log_q, exclude)

    def noise_logits(self, states):
        """NID head: per-position noise-class logits of user states ``[..., d]``."""
        return self.nid_head(states)

    # RecBole contract
    def calculate_loss(self, interaction):
        """The next-item loss alone; PMMRecTrainer adds the self-supervised objectives."""
        return self.recommendation_loss(self.encode_batch(interaction))

    def predict(self, interaction):
        user = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        items = self.all_item_vectors()[interaction[self.ITEM_ID]]
        return (user * items).sum(dim=-1)

    def full_sort_predict(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        user = self.forward(item_seq, interaction[self.ITEM_SEQ_LEN])
        return user @ self.all_item_vectors().T
