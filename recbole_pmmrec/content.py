"""Item content files: ``NAME.content.jsonl`` (text and image path per item) and image loading.

One JSON object per line::

    {"item_id": "42", "text": "raw UTF-8 text", "image": "images/42.jpg"}

``text`` and ``image`` may be missing or null (that modality is masked for the item);
``image`` is a path relative to the dataset folder.
"""

import json
from pathlib import Path

import torch
from PIL import Image


class ContentError(ValueError):
    """A content file or an image it names is malformed or missing."""


def content_file(data_path, dataset_name):
    return Path(data_path) / f"{dataset_name}.content.jsonl"


def read_content_file(path):
    """Read a content file into ``{item token: (text or None, image path or None)}``.

    Raises :class:`ContentError` naming the file and line on malformed JSON, a missing or
    repeated ``item_id``, or a field of the wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise ContentError(f"item content file not found: {path}")
    content = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {line_no}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ContentError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict) or row.get("item_id") in (None, ""):
                raise ContentError(f"{where}: each line needs a non-empty 'item_id' field")
            token = str(row["item_id"])
            if token in content:
                raise ContentError(f"{where}: item_id {token!r} appears twice")
            text, image = row.get("text"), row.get("image")
            for field, value in (("text", text), ("image", image)):
                if value is not None and not isinstance(value, str):
                    raise ContentError(
                        f"{where}: field '{field}' of item {token!r} must be a string or null, "
                        f"got {type(value).__name__}"
                    )
            text = text if text and text.strip() else None
            content[token] = (text, image or None, line_no)
    return content


def check_image(path, where):
    """Raise :class:`ContentError` if ``path`` is missing or does not decode as an image."""
    if not path.is_file():
        raise ContentError(f"{where}: image file not found: {path}")
    try:
        with Image.open(path) as img:
            img.verify()
    except Exception as err:  # PIL raises many types for corrupt files
        raise ContentError(f"{where}: image file cannot be read: {path} ({err})") from None


def load_pixels(paths, item_ids, transform):
    """Preprocessed pixels ``[N, 3, H, W]`` of ``item_ids``; an item without image
    (``paths[i]`` is None) gets a black image, which the item encoder masks out."""
    pixels = []
    for item_id in item_ids.tolist():
        path = paths[item_id]
        if path is None:
            pixels.append(transform(Image.new("RGB", (8, 8))))
            continue
        with Image.open(path) as img:
            pixels.append(transform(img.convert("RGB")))
    return torch.stack(pixels)
