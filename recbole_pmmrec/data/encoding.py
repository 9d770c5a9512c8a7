"""Item content -> the tensors the model reads: tokenised text and preprocessed pixels.

Used by :class:`~recbole_pmmrec.data.dataset.PMMRecDataset` for a dataset's catalogue and by
:class:`~recbole_pmmrec.recommend.Recommender` for any catalogue, so both encode an item
the same way.
"""

import torch

from recbole_pmmrec.data.content import ItemContent, check_modalities
from recbole_pmmrec.data.images import decode_images
from recbole_pmmrec.pretrained import image_size, load_tokenizer


def tokenize(texts, text_encoder, max_length):
    """``(ids, mask)`` ``[N, T]`` of ``texts`` (None or empty: no tokens), padded to the
    longest, truncated to ``max_length`` tokens, with the text encoder's tokenizer."""
    tokenizer = load_tokenizer(text_encoder)
    pad = tokenizer.pad_token_id or 0
    have = [i for i, t in enumerate(texts) if t]
    width = 1
    if have:
        encoded = tokenizer(
            [texts[i] for i in have], padding="longest", truncation=True, max_length=max_length, return_tensors="pt"
        )
        width = encoded["input_ids"].shape[1]
    ids = torch.full((len(texts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(texts), width), dtype=torch.long)
    if have:
        ids[have] = encoded["input_ids"]
        mask[have] = encoded["attention_mask"]
    return ids, mask


def item_content(texts, images, config):
    """``(ItemContent, image problems)`` of items given by ``texts`` (str or None) and
    ``images`` (``(path, where)`` or None), row 0 being padding, for the modalities of
    ``config``; a bad image raises, or with ``bad_images: mask`` is masked and listed."""
    modalities = check_modalities(config["item_modalities"])
    content, problems = ItemContent(n_items=len(texts)), []
    if "text" in modalities:
        content.text_ids, content.text_mask = tokenize(texts, config["text_encoder"], config["text_max_length"])
    if "image" in modalities:
        content.pixels, content.has_image, problems = decode_images(
            images, image_size(config["image_encoder"]), on_error=config["bad_images"] or "error"
        )
    return content, problems
