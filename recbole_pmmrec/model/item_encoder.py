"""Item ids -> item vectors, from content only: modality encoders, frozen-feature cache, fusion."""

from logging import getLogger
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from recbole_pmmrec.data.content import check_modalities
from recbole_pmmrec.model.fusion import FusionSettings, build_fusion, masked_mean
from recbole_pmmrec.model.modality_encoders import ImageEncoder, ImageEncoderSettings, TextEncoder, TextEncoderSettings


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
    to the model's device). When an encoder's backbone is fully frozen and
    ``cache_frozen_item_features`` is set, its token states for every item are computed once
    (on first use) and reused.
    """

    def __init__(self, config, content):
        super().__init__()
        self.modalities = check_modalities(config["item_modalities"])
        self.cache_frozen = config["cache_frozen_item_features"]
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
        self.fusion = build_fusion(
            FusionSettings.from_config(config), len(self.modalities), config["hidden_dropout_prob"]
        )
        self._caches = {}

    def clear_stale_caches(self, state_dict, prefix=""):
        """Drop the cached features of each encoder whose backbone ``state_dict`` changes."""
        for key in list(self._caches):
            backbone = getattr(self, f"{key[0]}_encoder").backbone
            key_prefix = f"{prefix}{key[0]}_encoder.backbone."
            for name, tensor in backbone.state_dict().items():
                new = state_dict.get(key_prefix + name)
                if new is not None and (new.shape != tensor.shape or not torch.equal(new.to(tensor.device), tensor)):
                    del self._caches[key]
                    break

    def _backbone(self, modality, ids):
        """Fresh backbone token states ``[N, T, H]`` of one modality and their mask ``[N, T]``."""
        if modality == "text":
            mask = self.text_mask[ids]
            mask = mask[:, : max(int(mask.sum(dim=1).max()), 1)]
            return self.text_encoder.backbone_states(self.text_ids[ids, : mask.shape[1]], mask), mask
        states = self.image_encoder.backbone_states(self.pixels[ids.cpu()].to(ids.device))
        return states, self.has_image[ids].unsqueeze(1).expand(-1, states.shape[1])

    @staticmethod
    def _pool(states, mask):
        return masked_mean(states, mask), mask.sum(dim=1) > 0

    def _encode_catalogue(self, modality, pooled):
        """Backbone states of every item, computed once for a frozen backbone."""
        ids = torch.arange(self.n_items, device=next(self.parameters()).device)
        getLogger().info(f"caching frozen {modality} features of {self.n_items} items")
        states, masks = [], []
        for chunk in tqdm(ids.split(self.chunk_size), desc=f"cache {modality} features", leave=False):
            chunk_states, chunk_mask = self._backbone(modality, chunk)
            if pooled:
                chunk_states, chunk_mask = self._pool(chunk_states, chunk_mask)
            elif modality == "text":  # pad every chunk to the full text width
                pad = self.text_ids.shape[1] - chunk_mask.shape[1]
                chunk_states = F.pad(chunk_states, (0, 0, 0, pad))
                chunk_mask = F.pad(chunk_mask, (0, pad))
            states.append(chunk_states)
            masks.append(chunk_mask)
        return torch.cat(states), torch.cat(masks)

    def modality_states(self, modality, ids, pooled):
        """Backbone states of one modality: token states ``[N, T, H]`` with their mask, or
        (``pooled``) their masked mean ``[N, H]`` with a presence mask ``[N]``."""
        encoder = getattr(self, f"{modality}_encoder")
        if not (self.cache_frozen and encoder.frozen):
            states, mask = self._backbone(modality, ids)
            return self._pool(states, mask) if pooled else (states, mask)
        key = (modality, pooled)
        if key not in self._caches:
            self._caches[key] = self._encode_catalogue(modality, pooled)
        states, mask = (cached[ids] for cached in self._caches[key])
        if modality == "text" and not pooled:
            width = max(int(mask.sum(dim=1).max()), 1)
            states, mask = states[:, :width], mask[:, :width]
        return states, mask

    def forward(self, ids):
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
