"""Item ids -> item vectors, from content only: modality encoders, frozen-feature cache, fusion."""

from logging import getLogger
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
from tqdm import tqdm

from recbole_pmmrec.content import load_pixels
from recbole_pmmrec.encoders import ImageEncoder, TextEncoder
from recbole_pmmrec.fusion import build_fusion, masked_mean

MODALITIES = ("text", "image")


class ItemVectors(NamedTuple):
    """Fused item vectors ``[N, d]`` and, when both modalities are used, each modality's
    mean-pooled projected vector (for cross-modal objectives)."""

    fused: torch.Tensor
    text: Optional[torch.Tensor] = None
    image: Optional[torch.Tensor] = None


def check_modalities(modalities):
    modalities = list(modalities)
    unknown = [m for m in modalities if m not in MODALITIES]
    if not modalities or unknown or len(set(modalities)) != len(modalities):
        raise ValueError(f"item_modalities must be a non-empty subset of {list(MODALITIES)}, got {modalities}")
    return modalities


class ItemEncoder(nn.Module):
    """Encodes items by their text and/or image (never by an ID embedding).

    ``content`` is the dataset's :class:`~recbole_pmmrec.dataset.ItemContent`. When an
    encoder's backbone is fully frozen and ``cache_frozen_item_features`` is set, its token
    states for every item are computed once (on first use) and reused.
    """

    def __init__(self, config, content):
        super().__init__()
        self.modalities = check_modalities(config["item_modalities"])
        hidden = config["hidden_size"]
        self.cache_frozen = config["cache_frozen_item_features"]
        self.chunk_size = config["item_encode_batch_size"]
        self.n_items = content.n_items
        self.text_encoder = self.image_encoder = None
        if "text" in self.modalities:
            self.text_encoder = TextEncoder(config["text_encoder"], hidden, config["text_trainable_layers"])
            self.register_buffer("text_ids", content.text_ids, persistent=False)
            self.register_buffer("text_mask", content.text_mask, persistent=False)
        if "image" in self.modalities:
            self.image_encoder = ImageEncoder(
                config["image_encoder"], config["image_pretrained"], hidden, config["image_trainable_layers"]
            )
            self.image_paths = content.image_paths
            self.register_buffer("has_image", content.has_image, persistent=False)
        self.fusion = build_fusion(config, len(self.modalities))
        self._caches = {}

    def clear_stale_caches(self, state_dict, prefix=""):
        """Drop the cached features of each encoder whose backbone ``state_dict`` changes."""
        for modality in list(self._caches):
            backbone = getattr(self, f"{modality}_encoder").backbone
            key_prefix = f"{prefix}{modality}_encoder.backbone."
            for name, tensor in backbone.state_dict().items():
                new = state_dict.get(key_prefix + name)
                if new is not None and (new.shape != tensor.shape or not torch.equal(new.to(tensor.device), tensor)):
                    del self._caches[modality]
                    break

    def _cached(self, modality, compute_all):
        if modality not in self._caches:
            self._caches[modality] = compute_all()
        return self._caches[modality]

    def _chunks(self, desc):
        ids = torch.arange(self.n_items, device=next(self.parameters()).device)
        chunks = ids.split(self.chunk_size)
        getLogger().info(f"caching frozen {desc} features of {self.n_items} items")
        return tqdm(chunks, desc=f"cache {desc} features", leave=False)

    # text
    def _text_backbone(self, ids, width):
        return self.text_encoder.backbone_states(self.text_ids[ids, :width], self.text_mask[ids, :width])

    def text_tokens(self, ids):
        mask = self.text_mask[ids]
        width = max(int(mask.sum(dim=1).max()), 1)
        if self.cache_frozen and self.text_encoder.frozen:
            full = self.text_ids.shape[1]
            cache = self._cached(
                "text", lambda: torch.cat([self._text_backbone(c, full) for c in self._chunks("text")])
            )
            states = cache[ids, :width]
        else:
            states = self._text_backbone(ids, width)
        return self.text_encoder.proj(states), mask[:, :width]

    # image
    def _image_backbone(self, ids):
        pixels = load_pixels(self.image_paths, ids, self.image_encoder.preprocess)
        return self.image_encoder.backbone_states(pixels.to(ids.device))

    def image_tokens(self, ids):
        if self.cache_frozen and self.image_encoder.frozen:
            cache = self._cached(
                "image", lambda: torch.cat([self._image_backbone(c) for c in self._chunks("image")])
            )
            states = cache[ids]
        else:
            states = self._image_backbone(ids)
        mask = self.has_image[ids].unsqueeze(1).expand(-1, states.shape[1])
        return self.image_encoder.proj(states), mask

    def forward(self, ids):
        text_tokens = text_mask = image_tokens = image_mask = None
        if self.text_encoder is not None:
            text_tokens, text_mask = self.text_tokens(ids)
        if self.image_encoder is not None:
            image_tokens, image_mask = self.image_tokens(ids)
        fused = self.fusion(text_tokens, text_mask, image_tokens, image_mask)
        if len(self.modalities) == 2:
            return ItemVectors(fused, masked_mean(text_tokens, text_mask), masked_mean(image_tokens, image_mask))
        return ItemVectors(fused)
