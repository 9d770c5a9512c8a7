"""Item ids -> item vectors, from content only: modality encoders, frozen-feature cache, fusion."""

from pathlib import Path
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_pmmrec.data.content import check_modalities
from recbole_pmmrec.distributed import barrier, rank
from recbole_pmmrec.model.feature_cache import build_or_load, cache_key, frozen_digest, tensors_digest
from recbole_pmmrec.model.fusion import (
    FusionSettings, build_fusion, masked_mean, pool_patch_grid, pool_text_segments,
)
from recbole_pmmrec.model.modality_encoders import ImageEncoder, ImageEncoderSettings, TextEncoder, TextEncoderSettings


LENGTH_GROUPS = 4  # items whose text tokens are computed per step go in groups of similar length


class ItemVectors(NamedTuple):
    """Fused item vectors ``[N, d]`` and, when both modalities are used, each modality's
    mean-pooled projected vector (for cross-modal objectives)."""

    fused: torch.Tensor
    text: Optional[torch.Tensor] = None
    image: Optional[torch.Tensor] = None


class ItemEncoder(nn.Module):
    """Encodes items by their text and/or image (never by an ID embedding).

    ``content`` is the dataset's :class:`~recbole_pmmrec.data.content.ItemContent`: token ids
    and masks, and preprocessed ``uint8`` pixels (kept on the CPU; a batch's rows are moved
    to the model's device). With ``cache_frozen_item_features``, the frozen part of each
    encoder (everything below its first trainable block, or all of it) is computed once for
    the catalogue and kept on disk (:mod:`~recbole_pmmrec.model.feature_cache`); each step
    then runs only the trainable top blocks on the batch's items.
    """

    def __init__(self, config, content):
        super().__init__()
        self.modalities = check_modalities(config["item_modalities"])
        self.cache_frozen = config["cache_frozen_item_features"]
        self.cache_dir = Path(config["feature_cache_dir"] or Path(config["data_path"]) / ".pmmrec_cache")
        self.cache_ram_bytes = int(config["feature_cache_ram_mb"] * 2**20)
        self.chunk_size = config["item_encode_batch_size"]
        self.n_items = content.n_items
        self.text_encoder = self.image_encoder = None
        if "text" in self.modalities:
            self.text_encoder = TextEncoder(TextEncoderSettings.from_config(config))
            self.register_buffer("text_ids", content.text_ids, persistent=False)
            self.register_buffer("text_mask", content.text_mask, persistent=False)
        if "image" in self.modalities:
            self.image_encoder = ImageEncoder(ImageEncoderSettings.from_config(config))
            self.pixels = content.pixels
            self.register_buffer("has_image", content.has_image, persistent=False)
        fusion = FusionSettings.from_config(config)
        dropout = config["fusion_dropout_prob"]
        self.fusion = build_fusion(fusion, len(self.modalities),
                                   config["hidden_dropout_prob"] if dropout is None else dropout)
        self.image_grid = fusion.fusion_image_grid if self.fusion.needs_tokens else 0
        self.text_segments = fusion.fusion_text_tokens if self.fusion.needs_tokens else 0
        self._caches = {}

    def encoder(self, modality):
        return self.text_encoder if modality == "text" else self.image_encoder

    def set_content(self, content):
        """Encode the items of ``content`` (another catalogue) from now on."""
        if "text" in self.modalities:
            self.text_ids, self.text_mask = content.text_ids, content.text_mask
        if "image" in self.modalities:
            self.pixels, self.has_image = content.pixels, content.has_image
        self.n_items = content.n_items
        self.clear_caches()

    def clear_caches(self):
        """Forget the opened feature caches (they are looked up again by their key)."""
        self._caches = {}

    def clear_stale_caches(self, state_dict, prefix=""):
        """Forget the opened caches of each encoder whose frozen tensors ``state_dict``
        changes (a loaded checkpoint with the same frozen weights keeps its caches open)."""
        for modality, pooled in list(self._caches):
            network = self.encoder(modality).backbone
            key_prefix = f"{prefix}{modality}_encoder.backbone."
            current = dict(network.named_parameters())
            current.update(network.named_buffers())
            for name, tensor in current.items():
                new = state_dict.get(key_prefix + name)
                if tensor.requires_grad or new is None:
                    continue
                if new.shape != tensor.shape or not torch.equal(new.to(tensor.device), tensor):
                    del self._caches[(modality, pooled)]
                    break

    # inputs of a batch of items
    def _inputs(self, modality, ids):
        """The encoder's inputs for ``ids`` and their token mask (text: trimmed to the
        longest text among ``ids``; image: no token mask)."""
        if modality == "text":
            mask = self.text_mask[ids]
            width = max(int(mask.sum(dim=1).max()), 1)
            return self.text_ids[ids, :width], mask[:, :width]
        return self.pixels[ids.cpu()].to(ids.device), None

    def _token_mask(self, modality, ids, n_tokens):
        if modality == "text":
            return self.text_mask[ids, :n_tokens]
        return self.has_image[ids].unsqueeze(1).expand(-1, n_tokens)

    @staticmethod
    def _pool(states, mask):
        return masked_mean(states, mask), mask.sum(dim=1) > 0

    # the frozen part, cached
    def feature_cache(self, modality, pooled=False):
        """The feature cache of ``modality`` (opened or built on first use), or None when
        the frozen part is computed per step (caching off, or an encoder without an inner
        boundary whose top blocks train)."""
        encoder = self.encoder(modality)
        if not self.cache_frozen or not (encoder.frozen or encoder.view.splittable):
            return None
        pooled = pooled and encoder.frozen  # a trainable top needs the tokens
        if (modality, pooled) not in self._caches:
            if rank() != 0:  # in a distributed run, one process builds the cache, the others read it
                barrier()
            self._caches[(modality, pooled)] = self._open_cache(modality, encoder, pooled)
            if rank() == 0:
                barrier()
        return self._caches[(modality, pooled)]

    def _open_cache(self, modality, encoder, pooled):
        device = next(self.parameters()).device
        probe_ids = torch.arange(1, min(self.n_items, 5), device=device)
        probe_inputs, probe_mask = self._inputs(modality, probe_ids)
        if not encoder.frozen and not encoder.view.check_split(encoder.prepare(probe_inputs), probe_mask, encoder.split):
            raise RuntimeError(
                f"{modality} encoder: running it in two parts at block {encoder.split} does not reproduce its "
                f"output; set cache_frozen_item_features: False"
            )
        probe = self._bottom(modality, encoder, probe_inputs, probe_mask)
        if pooled:
            shape = (self.n_items, probe.shape[-1])
        elif modality == "text":  # every text padded to the longest of the catalogue
            shape = (self.n_items, self.text_ids.shape[1], probe.shape[-1])
        else:  # image tokens, or a CNN's feature map entering its first trainable block
            shape = (self.n_items, *probe.shape[1:])
        inputs = [self.text_ids, self.text_mask] if modality == "text" else [self.pixels, self.has_image]
        key = cache_key(modality, type(encoder.view).__name__, encoder.split, pooled, shape, self.image_grid,
                        frozen_digest(encoder.backbone), tensors_digest(enumerate(inputs)))
        path = self.cache_dir / f"{modality}-{'pooled' if pooled else f'split{encoder.split}'}-{key}.npy"

        def encode_chunk(ids):
            ids = ids.to(device)
            inputs, token_mask = self._inputs(modality, ids)
            hidden = self._bottom(modality, encoder, inputs, token_mask)
            if pooled:
                return self._pool(hidden, self._token_mask(modality, ids, hidden.shape[1]))[0]
            if modality == "text":
                return F.pad(hidden, (0, 0, 0, shape[1] - hidden.shape[1]))
            return hidden

        return build_or_load(path, shape, encode_chunk, self.n_items, self.chunk_size, self.cache_ram_bytes,
                             desc=f"{modality} features")

    def modality_states(self, modality, ids, pooled):
        """Token states of one modality ``[N, T, H]`` with their mask, or (``pooled``) their
        masked mean ``[N, H]`` with a presence mask ``[N]``."""
        encoder = self.encoder(modality)
        cache = self.feature_cache(modality, pooled)
        if cache is not None:
            token_mask, width = None, None
            if modality == "text":  # only up to the longest text among ids
                token_mask = self.text_mask[ids]
                width = max(int(token_mask.sum(dim=1).max()), 1)
                token_mask = token_mask[:, :width]
            hidden = cache.rows(ids, None if pooled and encoder.frozen else width)
            hidden = hidden.to(device=ids.device, dtype=encoder.proj.weight.dtype)
            if pooled and encoder.frozen:
                return hidden, self._token_mask(modality, ids, 1)[:, 0] > 0
        else:
            inputs, token_mask = self._inputs(modality, ids)
            hidden = self._bottom(modality, encoder, inputs, token_mask)
        states = self._reduced(modality, encoder.top(hidden, token_mask))
        mask = self._token_mask(modality, ids, states.shape[1])
        if pooled:
            return self._pool(states, mask)
        if modality == "text":  # for a fusion over tokens: runs of text tokens pooled
            return pool_text_segments(states, mask, self.text_segments)
        return states, mask

    def _reduced(self, modality, states):
        """An encoder's output states as the fusion takes them: image patch tokens pooled
        to ``fusion_image_grid`` (before the affine projection, the same as after it)."""
        return pool_patch_grid(states, self.image_grid) if modality == "image" else states

    def _bottom(self, modality, encoder, inputs, token_mask):
        """The frozen part's states; when that is the whole encoder, as the fusion takes
        them (hidden states entering trainable blocks are never pooled)."""
        hidden = encoder.bottom(inputs, token_mask)
        return self._reduced(modality, hidden) if encoder.frozen else hidden

    def forward(self, ids):
        if not self._tokens_per_step():
            return self._encode(ids)
        # text tokens go through a network per step: items in groups of similar text length,
        # so that each group's tokens are padded only to its own longest text
        order = torch.argsort(self.text_mask[ids].sum(dim=1))
        groups = [self._encode(ids[group]) for group in order.tensor_split(min(LENGTH_GROUPS, len(ids)))]
        unsort = torch.argsort(order)
        return ItemVectors(*(None if parts[0] is None else torch.cat(parts)[unsort] for parts in zip(*groups)))

    def _tokens_per_step(self):
        """Whether text token states are computed per step (trainable text blocks, or a
        fusion over tokens) rather than only read as pooled vectors."""
        return "text" in self.modalities and (self.fusion.needs_tokens or not self.text_encoder.frozen)

    def _encode(self, ids):
        # a fusion of pooled vectors can pool the backbone states before the (affine)
        # projection: the same vectors, projected once per item instead of once per token
        pooled = not self.fusion.needs_tokens
        vectors, tokens = {}, {}
        for modality in self.modalities:
            states, mask = self.modality_states(modality, ids, pooled)
            projected = getattr(self, f"{modality}_encoder").proj(states)
            if pooled:
                vectors[modality] = projected * mask.unsqueeze(-1).to(projected.dtype)
            else:
                tokens[modality] = (projected, mask)
                vectors[modality] = masked_mean(projected, mask)
        if pooled:
            fused = self.fusion.combine(vectors.get("text"), vectors.get("image"))
        else:
            fused = self.fusion(*tokens["text"], *tokens["image"])
        if len(self.modalities) == 2:
            return ItemVectors(fused, vectors["text"], vectors["image"])
        return ItemVectors(fused)

