"""``PMMRecDataset``: RecBole's SequentialDataset plus item content and per-user training rows;
for every model, the training split reduced to a share of its users (``train_user_fraction``)."""

import os
from functools import lru_cache

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset

from recbole_pmmrec.data.content import (
    ContentError, check_modalities, content_file, garbled_texts, read_content_file,
)
from recbole_pmmrec.data.atomic import check_atomic_header, first_bad_value
from recbole_pmmrec.data.encoding import item_content

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


def training_history(train):
    """``(users, items)``: every (user, item) pair of a sequential dataset's training rows
    (targets and histories). With RecBole's one row per prefix, that is every training
    interaction."""
    inter = train.inter_feat
    users, items = [inter[train.uid_field]], [inter[train.iid_field]]
    list_field = getattr(train, "item_id_list_field", None)
    if list_field in inter.interaction:
        seq = inter[list_field]
        users.append(inter[train.uid_field].unsqueeze(1).expand_as(seq)[seq > 0])
        items.append(seq[seq > 0])
    pairs = torch.unique(torch.stack([torch.cat(users), torch.cat(items)]), dim=1)
    return pairs[0], pairs[1]


def keep_train_users(train, fraction, seed):
    """``train`` (a built training split) with only the rows of ``fraction`` of its users: the
    first ``round(fraction * users)`` (at least one) of a permutation of its users, sorted by
    token, drawn from ``seed``. For one seed the users kept for a smaller fraction are among
    those kept for a larger one, whatever the model; ``fraction`` 1 returns ``train``."""
    if fraction >= 1:
        return train
    uids = train.inter_feat[train.uid_field]
    users = torch.unique(uids)
    users = users[np.argsort(train.id2token(train.uid_field, users.numpy()), kind="stable")]
    order = torch.randperm(len(users), generator=torch.Generator().manual_seed(seed))
    kept = users[order[:max(1, round(fraction * len(users)))]]
    rows = torch.isin(uids, kept)
    train.logger.info(f"train_user_fraction={fraction}: training rows of {len(kept)} of {len(users)} users kept "
                      f"({int(rows.sum())} of {len(rows)} rows); validation and test keep every user")
    return train.copy(train.inter_feat[rows])


@lru_cache(maxsize=None)
def with_train_users(dataset_class):
    """A subclass of ``dataset_class`` (one of RecBole's) whose training split keeps
    ``train_user_fraction`` of its users (:func:`keep_train_users`). The history that full
    ranking excludes (``training_pairs``) stays the whole split's: the evaluation does not
    depend on the fraction."""

    class TrainUsersDataset(dataset_class):
        def build(self):
            datasets = super().build()
            datasets[0].training_pairs = training_history(datasets[0])
            datasets[0] = keep_train_users(datasets[0], self.config["train_user_fraction"], self.config["seed"])
            return datasets

    return TrainUsersDataset


class PMMRecDataset(SequentialDataset):
    """Sequential dataset whose items carry text and/or an image (``NAME.content.jsonl``).

    Text is tokenised once here with the text encoder's tokenizer; images are decoded and
    resized once (:mod:`recbole_pmmrec.data.images`). Training rows are one per user (or
    per window) instead of one per prefix, see ``train_rows``.
    """

    def __init__(self, config):
        super().__init__(config)
        self.item_content = self._load_item_content()

    def _load_feat(self, filepath, source):
        """RecBole's reading of an atomic file, after checking its header; a value RecBole
        cannot read is an error naming the file, line and field."""
        if os.path.isfile(filepath):
            check_atomic_header(filepath, (self.config["load_col"] or {}).get(getattr(source, "value", source)))
        try:
            return super()._load_feat(filepath, source)
        except ValueError as error:
            raise ContentError(first_bad_value(filepath) or f"{filepath}: {error}") from None

    def _load_item_content(self):
        config = self.config
        modalities = check_modalities(config["item_modalities"])
        path = content_file(config["data_path"], config["dataset"])
        raw = read_content_file(path)
        tokens = [str(t) for t in self.field2id_token[self.iid_field]]
        rows = [None] + [raw.get(token) for token in tokens[1:]]  # row 0: [PAD]
        texts = [r and r[0] for r in rows]
        images = [None if r is None or r[1] is None else (path.parent / r[1], f"{path}, line {r[2]} (item {t})")
                  for t, r in zip(tokens, rows)]
        content, image_problems = item_content(texts, images, config)
        self._report_content(path, raw, tokens, rows, content, modalities, image_problems)
        return content

    def _report_content(self, path, raw, tokens, rows, content, modalities, image_problems):
        """Log what each item lacks (counted, first ids named); no item with an enabled
        modality is an error."""
        n_items, name = len(tokens) - 1, path.name
        no_line = [t for t, r in zip(tokens[1:], rows[1:]) if r is None]
        unused = len(set(raw) - set(tokens[1:]))
        garbled = garbled_texts({t: raw[t] for t in tokens[1:] if t in raw})
        if "text" in modalities:
            no_text = int((content.text_mask[1:].sum(dim=1) == 0).sum())
            self.logger.info(f"{name}: {no_text} of {n_items} items have no text, or only whitespace (text masked)")
            if no_text == n_items:
                raise ContentError(f"{path}: no item has text, but item_modalities includes 'text'")
        if "image" in modalities:
            no_image = int((content.has_image[1:] == 0).sum())
            self.logger.info(f"{name}: {no_image} of {n_items} items have no image (image masked)")
            if image_problems:
                self.logger.warning(f"{name}: {len(image_problems)} images could not be read and are masked "
                                    f"(bad_images: mask), e.g. {'; '.join(image_problems[:3])}")
            if no_image == n_items:
                raise ContentError(
                    f"{path}: no item has an image, but item_modalities includes 'image' "
                    "(set item_modalities: [text] for a text-only dataset)"
                )
        if no_line:
            self.logger.warning(f"{name}: {len(no_line)} items of {self.config['dataset']}.inter have no line "
                                f"(no content), e.g. {no_line[:5]}")
        if unused:
            self.logger.info(f"{name}: {unused} lines name items not in the filtered dataset (ignored)")
        if garbled:
            self.logger.warning(f"{name}: {len(garbled)} texts look garbled (replacement or control characters, "
                                f"or UTF-8 read as latin-1 upstream), e.g. items {garbled[:5]}")

    def build(self):
        datasets = super().build()
        history = training_history(datasets[0])  # from every prefix row, before users and rows are selected
        train = keep_train_users(datasets[0], self.config["train_user_fraction"], self.config["seed"])
        mode = self.config["train_rows"]
        keep = select_train_rows(train.inter_feat[self.uid_field].numpy(), mode, self.max_item_list_len)
        if len(keep) != len(train):
            self.logger.info(f"train_rows={mode}: {len(keep)} training rows kept of {len(train)} prefixes")
            train = train.copy(train.inter_feat[torch.from_numpy(keep)])
        datasets[0] = train
        # one row per prefix: count the targets only, or every item would count once per prefix
        counts = item_train_counts(train, with_history=mode != "prefix")
        for ds in (self, *datasets):
            ds.item_train_counts = counts
            ds.training_pairs = history
        return datasets
