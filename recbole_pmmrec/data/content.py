"""Item content: the ``NAME.content.jsonl`` file and the tensors the model reads.

One JSON object per line::

    {"item_id": "42", "text": "raw UTF-8 text", "image": "images/42.jpg"}

``text`` and ``image`` may be missing or null (that modality is masked for the item);
``image`` is a path relative to the dataset folder.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from dataset_converters.reading import MOJIBAKE

MODALITIES = ("text", "image")


class ContentError(ValueError):
    """A content file or an image it names is malformed or missing."""


@dataclass
class ItemContent:
    """Item content indexed by RecBole's internal item id (id 0 is padding: no content)."""

    n_items: int
    text_ids: Optional[torch.Tensor] = None  # [n_items, T] token ids
    text_mask: Optional[torch.Tensor] = None  # [n_items, T] 1 = real token
    pixels: Optional[torch.Tensor] = None  # [n_items, 3, S, S] uint8, resized and cropped
    has_image: Optional[torch.Tensor] = None  # [n_items] float


def check_modalities(modalities):
    """``modalities`` as a list, if it is a non-empty subset of :data:`MODALITIES`."""
    modalities = list(modalities)
    unknown = [m for m in modalities if m not in MODALITIES]
    if not modalities or unknown or len(set(modalities)) != len(modalities):
        raise ValueError(f"item_modalities must be a non-empty subset of {list(MODALITIES)}, got {modalities}")
    return modalities


def content_file(data_path, dataset_name):
    return Path(data_path) / f"{dataset_name}.content.jsonl"



def json_lines(path, error):
    """``(line number, "<path>, line N", value)`` of each non-blank line of a UTF-8 JSON-lines
    file; a line that is not UTF-8 or not JSON raises ``error`` naming the file and line."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            where = f"{path}, line {line_no}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise error(f"{where}: not valid UTF-8 ({err.reason} at byte {err.start}); the file must be "
                            f"UTF-8 JSON lines") from None
            if not line.strip():
                continue
            try:
                yield line_no, where, json.loads(line)
            except json.JSONDecodeError as err:
                raise error(f"{where}: not valid JSON ({err.msg})") from None

def read_content_file(path):
    """Read a content file into ``{item token: (text or None, image path or None, line number)}``.

    Raises :class:`ContentError` naming the file and line on malformed JSON, a missing or
    repeated ``item_id``, or a field of the wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise ContentError(f"item content file not found: {path}")
    content = {}
    for line_no, where, row in json_lines(path, ContentError):
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


def garbled_texts(content):
    """Item tokens whose text looks like mojibake (replacement or control characters,
    UTF-8 read as latin-1): the text was decoded with the wrong encoding upstream."""
    return [token for token, (text, _, _) in content.items() if text and MOJIBAKE.search(text)]
