"""PMMRecDataset: tokenised text, masked modalities, training rows."""

import numpy as np
import pytest
import torch
from recbole.data import data_preparation

from recbole_pmmrec.data.content import ContentError
from recbole_pmmrec.data.dataset import select_train_rows
from tests.conftest import build_dataset, write_tiny_dataset


def test_select_train_rows():
    uids = np.array([1, 1, 1, 1, 1, 2, 2, 3])
    assert select_train_rows(uids, "user", 2).tolist() == [4, 6, 7]
    assert select_train_rows(uids, "window", 2).tolist() == [0, 2, 4, 6, 7]
    assert select_train_rows(uids, "prefix", 2).tolist() == list(range(8))
    with pytest.raises(ValueError, match="train_rows"):
        select_train_rows(uids, "bogus", 2)


def test_one_training_row_per_user_with_the_whole_history(tiny_data, make_config):
    config, dataset = build_dataset(make_config, tiny_data, MAX_ITEM_LIST_LENGTH=20)
    train, valid, test = data_preparation(config, dataset)
    inter = train._dataset.inter_feat
    assert len(inter) == dataset.user_num - 1  # one per user (12 items each: 9 train prefixes)
    assert (inter["item_length"] == 9).all()  # history of 9 + target = the 10 training items
    # the training row ends right where validation starts
    valid_inter = valid._dataset.inter_feat
    by_user = {int(u): i for i, u in enumerate(valid_inter["user_id"])}
    for row in range(len(inter)):
        v = by_user[int(inter["user_id"][row])]
        assert int(valid_inter["item_id_list"][v][9]) == int(inter["item_id"][row])


def test_item_text_is_tokenised_once_in_the_dataset(tiny_data, make_config, tiny_bert):
    from transformers import AutoTokenizer

    _, dataset = build_dataset(make_config, tiny_data)
    content = dataset.item_content
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    item = dataset.token2id("item_id", "i7")
    ids = content.text_ids[item][content.text_mask[item].bool()].tolist()
    assert tokenizer.decode(ids, skip_special_tokens=True) == "item 7 hat red"
    assert content.text_mask[0].sum() == 0  # padding item has no content


def test_items_missing_a_modality_are_masked_and_counted(tmp_path, make_config, caplog):
    write_tiny_dataset(tmp_path, no_text=(3, 4), no_image=(5,))
    _, dataset = build_dataset(make_config, tmp_path)
    content = dataset.item_content
    assert content.text_mask[dataset.token2id("item_id", "i3")].sum() == 0
    assert content.has_image[dataset.token2id("item_id", "i5")] == 0
    assert content.has_image[dataset.token2id("item_id", "i6")] == 1
    assert int((content.text_mask[1:].sum(dim=1) == 0).sum()) == 2


def test_text_only_dataset_needs_no_images(tmp_path, make_config):
    write_tiny_dataset(tmp_path, with_images=False)
    with pytest.raises(ContentError, match="no item has an image"):
        build_dataset(make_config, tmp_path)
    _, dataset = build_dataset(make_config, tmp_path, item_modalities=["text"])
    assert dataset.item_content.has_image is None
