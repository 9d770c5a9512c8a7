"""Pre-trained modality encoders: a HF text transformer and an open_clip vision tower.

Each returns per-token states of its backbone; a Linear projection maps them to the model
width. Only the top ``trainable_layers`` transformer blocks train; with 0 the backbone is
frozen (kept in eval mode) and its outputs can be cached by the item encoder.
"""

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from recbole_pmmrec.model.backbones import HFTransformer, OpenClipViT, WholeNetwork
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


def transformer_blocks(network):
    """The ordered list of transformer blocks of ``network``."""
    for dotted in _BLOCK_PATHS:
        module = network
        for part in dotted.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return module
    raise ValueError(
        f"cannot find the transformer blocks of {type(network).__name__} "
        f"(looked for {', '.join(_BLOCK_PATHS)})"
    )


def freeze_all_but_top(view, trainable_layers, extra_trainable=()):
    """Freeze ``view``'s network except its top ``trainable_layers`` blocks (and
    ``extra_trainable`` modules, e.g. a final norm, when any block trains)."""
    if not 0 <= trainable_layers <= view.n_blocks:
        raise ValueError(
            f"trainable_layers={trainable_layers} but the encoder has {view.n_blocks} blocks"
        )
    view.network.requires_grad_(False)
    if trainable_layers:
        for block in view.blocks[view.n_blocks - trainable_layers :]:
            block.requires_grad_(True)
        for module in extra_trainable:
            if module is not None:
                module.requires_grad_(True)


class _ModalityEncoder(nn.Module):
    """A pre-trained network (``backbone``) whose top ``trainable_layers`` blocks train,
    seen through a :class:`~recbole_pmmrec.model.backbones.Backbone` (``view``), and a
    Linear projection (``proj``). Everything below ``split`` is frozen: :meth:`bottom` runs
    it without gradients or dropout (its output can be cached), :meth:`top` runs the rest."""

    def __init__(self, trainable_layers):
        super().__init__()
        self.trainable_layers = trainable_layers

    @property
    def frozen(self):
        return self.trainable_layers == 0

    @property
    def split(self):
        """The first trainable block (``n_blocks`` when frozen)."""
        return self.view.n_blocks - self.trainable_layers

    @property
    def n_blocks(self):
        return self.view.n_blocks

    def train(self, mode=True):
        """Only the trainable top blocks follow ``mode``: the frozen part never drops out,
        so it gives the same states at every step (which is what makes it cacheable)."""
        super().train(mode)
        self.backbone.eval()
        for block in self.view.blocks[self.split:]:
            block.train(mode)
        return self

    def bottom(self, inputs, token_mask):
        """The frozen part: hidden states entering the first trainable block."""
        with torch.no_grad():
            return self.view.bottom(self.prepare(inputs), token_mask, self.split)

    def top(self, hidden, token_mask):
        """The trainable part: output token states from :meth:`bottom`'s hidden states."""
        return self.view.top(hidden, token_mask, self.split)

    def backbone_states(self, inputs, token_mask=None):
        """The backbone's output token states ``[N, T, H]``."""
        return self.top(self.bottom(inputs, token_mask), token_mask)

    def prepare(self, inputs):
        return inputs


class TextEncoder(_ModalityEncoder):
    """Any HF ``AutoModel`` (name or local path) -> token states -> Linear(hidden_size).
    BERT-family encoders split at any block; others run whole (no boundary cache)."""

    def __init__(self, settings: TextEncoderSettings):
        super().__init__(settings.text_trainable_layers)
        from transformers import AutoModel

        self.source = resolve_text_encoder(settings.text_encoder)
        self.backbone = AutoModel.from_pretrained(self.source)
        self.view = _text_view(self.backbone)
        freeze_all_but_top(self.view, self.trainable_layers)
        self.hidden_size = self.backbone.config.hidden_size
        self.proj = nn.Linear(self.hidden_size, settings.hidden_size)


def _text_view(network):
    if hasattr(network, "embeddings") and hasattr(getattr(network, "encoder", None), "layer"):
        return HFTransformer(network)
    return WholeNetwork(
        network,
        transformer_blocks(network),
        lambda ids, mask: network(input_ids=ids, attention_mask=mask).last_hidden_state,
    )


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
        self.view = OpenClipViT(self.backbone)
        freeze_all_but_top(self.view, self.trainable_layers, extra_trainable=(getattr(self.backbone, "ln_post", None),))
        self.hidden_size = self.backbone.ln_post.normalized_shape[0]
        self.proj = nn.Linear(self.hidden_size, settings.hidden_size)

    def prepare(self, pixels):
        return (pixels.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std
