"""``PMMRecDataset``: RecBole's SequentialDataset plus item content and per-user training rows."""

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset

from recbole_pmmrec.data.content import ContentError, ItemContent, check_modalities, content_file, read_content_file
from recbole_pmmrec.data.images import decode_images
from recbole_pmmrec.pretrained import image_size, load_tokenizer

TRAIN_ROWS = ("user", "window", "prefix")


def select_train_rows(uids, mode, window):
    """Row indices to keep from RecBole's one-row-per-prefix training data.

    ``uids`` is the user column of the augmented rows (each user's rows contiguous and in
    time order). ``user`` keeps each user's last row (its history + target holds the whole
    truncated sequence, every position supervised); ``window`` also keeps every
    ``window``-th row before it, so non-overlapping windows cover the full history;
    ``prefix`` keeps all rows (RecBole's augmentation, last position supervised).
    """
    if mode not in TRAIN_ROWS:
        raise ValueError(f"train_rows must be one of {TRAIN_ROWS}, got {mode!r}")
    n = len(uids)
    if mode == "prefix" or n == 0:
        return np.arange(n)
    is_last = np.ones(n, dtype=bool)
    is_last[:-1] = uids[1:] != uids[:-1]
    # position counted from the end of each user's block of rows
    last_index = np.minimum.accumulate(np.where(is_last, np.arange(n), n)[::-1])[::-1]
    from_end = last_index - np.arange(n)
    keep = from_end == 0 if mode == "user" else from_end % window == 0
    return np.flatnonzero(keep)


def item_train_counts(train, with_history=True):
    """``[item_num]``: how often each item occurs in the training rows of any sequential
    dataset, in the rows' histories and targets (or the targets only). The one source of
    "which items occur in training" (logQ correction, NID replacements, unseen items)."""
    inter = train.inter_feat
    items = inter[train.iid_field]
    list_field = getattr(train, "item_id_list_field", None)
    if with_history and list_field in inter.interaction:
        seq = inter[list_field]
        items = torch.cat([seq[seq > 0], items])
    return torch.bincount(items, minlength=train.item_num).float()


class PMMRecDataset(SequentialDataset):
    """Sequential dataset whose items carry text and/or an image (``NAME.content.jsonl``).

    Text is tokenised once here with the text encoder's tokenizer; images are decoded and
    resized once (:mod:`recbole_pmmrec.data.images`). Training rows are one per user (or
    per window) instead of one per prefix, see ``train_rows``.
    """

    def __init__(self, config):
        super().__init__(config)
        self.item_content = self._load_item_content()

    def _load_item_content(self):
        config = self.config
        modalities = check_modalities(config["item_modalities"])
        path = content_file(config["data_path"], config["dataset"])
        raw = read_content_file(path)
        tokens = self.field2id_token[self.iid_field]
        n_items = len(tokens)
        rows = [raw.get(str(tok)) for tok in tokens]
        rows[0] = None  # [PAD]
        known = set(str(t) for t in tokens[1:])
        unused = sum(1 for tok in raw if tok not in known)
        no_content = sum(1 for r in rows[1:] if r is None)
        content = ItemContent(n_items=n_items)
        if "text" in modalities:
            content.text_ids, content.text_mask = self._tokenize([r and r[0] for r in rows])
            no_text = int((content.text_mask[1:].sum(dim=1) == 0).sum())
            self.logger.info(f"{path.name}: {no_text} of {n_items - 1} items have no text (text masked)")
            if no_text == n_items - 1:
                raise ContentError(f"{path}: no item has text, but item_modalities includes 'text'")
        if "image" in modalities:
            images = [None if r is None or r[1] is None else (path.parent / r[1], f"{path}, line {r[2]}")
                      for r in rows]
            content.pixels, content.has_image = decode_images(images, image_size(config["image_encoder"]))
            no_image = int((content.has_image[1:] == 0).sum())
            self.logger.info(f"{path.name}: {no_image} of {n_items - 1} items have no image (image masked)")
            if no_image == n_items - 1:
                raise ContentError(
                    f"{path}: no item has an image, but item_modalities includes 'image' "
                    "(set item_modalities: [text] for a text-only dataset)"
                )
        if no_content:
            self.logger.warning(f"{path.name}: {no_content} items of {config['dataset']}.inter have no line")
        if unused:
            self.logger.info(f"{path.name}: {unused} lines name items not in the filtered dataset (ignored)")
        return content

    def _tokenize(self, texts):
        tokenizer = load_tokenizer(self.config["text_encoder"])
        pad = tokenizer.pad_token_id or 0
        have = [i for i, t in enumerate(texts) if t]
        width = 1
        if have:
            encoded = tokenizer(
                [texts[i] for i in have],
                padding="longest",
                truncation=True,
                max_length=self.config["text_max_length"],
                return_tensors="pt",
            )
            width = encoded["input_ids"].shape[1]
        ids = torch.full((len(texts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(texts), width), dtype=torch.long)
        if have:
            ids[have] = encoded["input_ids"]
            mask[have] = encoded["attention_mask"]
        return ids, mask

    def build(self):
        datasets = super().build()
        train = datasets[0]
        mode = self.config["train_rows"]
        keep = select_train_rows(train.inter_feat[self.uid_field].numpy(), mode, self.max_item_list_len)
        if len(keep) != len(train):
            self.logger.info(f"train_rows={mode}: {len(keep)} training rows kept of {len(train)} prefixes")
            datasets[0] = train.copy(train.inter_feat[torch.from_numpy(keep)])
        # one row per prefix: count the targets only, or every item would count once per prefix
        counts = item_train_counts(datasets[0], with_history=mode != "prefix")
        for ds in (self, *datasets):
            ds.item_train_counts = counts
        return datasets
