"""Pre-trained modality encoders: a HF text transformer and an open_clip vision tower.

Each returns per-token states of its backbone; a Linear projection maps them to the model
width. Only the top ``trainable_layers`` transformer blocks train; with 0 the backbone is
frozen (kept in eval mode) and its outputs can be cached by the item encoder.
"""

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from recbole_pmmrec.model.settings import ComponentSettings
from recbole_pmmrec.pretrained import clip_model_name, resolve_text_encoder


@dataclass(frozen=True)
class TextEncoderSettings(ComponentSettings):
    text_encoder: Optional[str]
    text_max_length: int
    text_trainable_layers: int
    hidden_size: int


@dataclass(frozen=True)
class ImageEncoderSettings(ComponentSettings):
    image_encoder: str
    image_pretrained: Optional[str]
    image_trainable_layers: int
    hidden_size: int


_BLOCK_PATHS = (
    "encoder.layer",  # BERT, RoBERTa, XLM-R, MiniLM, ELECTRA
    "encoder.layers",
    "transformer.layer",  # DistilBERT
    "layers",
    "h",
    "transformer.resblocks",  # open_clip ViT
    "trunk.blocks",  # open_clip timm towers
)


def transformer_blocks(backbone):
    """The ordered list of transformer blocks of ``backbone``."""
    for dotted in _BLOCK_PATHS:
        module = backbone
        for part in dotted.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return module
    raise ValueError(
        f"cannot find the transformer blocks of {type(backbone).__name__} "
        f"(looked for {', '.join(_BLOCK_PATHS)})"
    )


def freeze_all_but_top(backbone, trainable_layers, extra_trainable=()):
    """Freeze ``backbone`` except its top ``trainable_layers`` blocks (and ``extra_trainable``
    modules, e.g. a final norm, when any block trains). Returns the number of blocks."""
    blocks = transformer_blocks(backbone)
    if not 0 <= trainable_layers <= len(blocks):
        raise ValueError(
            f"trainable_layers={trainable_layers} but the encoder has {len(blocks)} blocks"
        )
    backbone.requires_grad_(False)
    if trainable_layers:
        for block in blocks[len(blocks) - trainable_layers :]:
            block.requires_grad_(True)
        for module in extra_trainable:
            if module is not None:
                module.requires_grad_(True)
    return len(blocks)


class _ModalityEncoder(nn.Module):
    """Shared frozen/partly-trainable behaviour; subclasses set ``backbone`` and ``proj``."""

    def __init__(self, trainable_layers):
        super().__init__()
        self.trainable_layers = trainable_layers

    @property
    def frozen(self):
        return self.trainable_layers == 0

    def train(self, mode=True):
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # no dropout in a frozen backbone
        return self

    def backbone_states(self, *inputs):
        if self.frozen:
            with torch.no_grad():
                return self._backbone_states(*inputs)
        return self._backbone_states(*inputs)


class TextEncoder(_ModalityEncoder):
    """Any HF ``AutoModel`` (name or local path) -> token states -> Linear(hidden_size)."""

    def __init__(self, settings: TextEncoderSettings):
        super().__init__(settings.text_trainable_layers)
        from transformers import AutoModel

        self.source = resolve_text_encoder(settings.text_encoder)
        self.backbone = AutoModel.from_pretrained(self.source)
        self.n_blocks = freeze_all_but_top(self.backbone, self.trainable_layers)
        self.hidden_size = self.backbone.config.hidden_size
        self.proj = nn.Linear(self.hidden_size, settings.hidden_size)

    def _backbone_states(self, input_ids, attention_mask):
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class ImageEncoder(_ModalityEncoder):
    """An open_clip vision tower (name + pretrained tag or checkpoint) -> CLS+patch states -> Linear.

    It takes the data layer's ``uint8`` pixels (already resized and cropped) and scales and
    normalises them as its weights expect.
    """

    def __init__(self, settings: ImageEncoderSettings):
        super().__init__(settings.image_trainable_layers)
        import open_clip

        name = clip_model_name(settings.image_encoder)
        clip = open_clip.create_model(name, pretrained=settings.image_pretrained or None)
        self.backbone = clip.visual
        if not hasattr(self.backbone, "forward_intermediates"):
            raise ValueError(f"image_encoder {settings.image_encoder!r}: its vision tower cannot return token states")
        preprocess = self.backbone.preprocess_cfg
        self.register_buffer("pixel_mean", 255 * torch.tensor(preprocess["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", 255 * torch.tensor(preprocess["std"]).view(1, 3, 1, 1), persistent=False)
        self.n_blocks = freeze_all_but_top(
            self.backbone, self.trainable_layers, extra_trainable=(getattr(self.backbone, "ln_post", None),)
        )
        self.hidden_size = self.backbone.ln_post.normalized_shape[0]
        self.proj = nn.Linear(self.hidden_size, settings.hidden_size)

    def _backbone_states(self, pixels):
        pixels = (pixels.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std
        out = self.backbone.forward_intermediates(
            pixels,
            indices=1,
            normalize_intermediates=True,
            intermediates_only=True,
            output_fmt="NLC",
            output_extra_tokens=True,
        )
        return torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], dim=1)
