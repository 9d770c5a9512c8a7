"""Item content loading, errors naming file and line, and PMMRecDataset's training rows."""

import json

import numpy as np
import pytest
import torch
from recbole.data import data_preparation

from conftest import write_tiny_dataset
from recbole_pmmrec.content import ContentError, read_content_file
from recbole_pmmrec.dataset import select_train_rows
from recbole_pmmrec.quick_start import build_config
from recbole_pmmrec.registry import create_dataset


def _dataset(make_config, data_path, **overrides):
    config = build_config("PMMRec", "tiny", config_dict=make_config(data_path, **overrides))
    return config, create_dataset(config)


def _rewrite_line(folder, line_no, text):
    path = folder / "tiny" / "tiny.content.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_select_train_rows():
    uids = np.array([1, 1, 1, 1, 1, 2, 2, 3])
    assert select_train_rows(uids, "user", 2).tolist() == [4, 6, 7]
    assert select_train_rows(uids, "window", 2).tolist() == [0, 2, 4, 6, 7]
    assert select_train_rows(uids, "prefix", 2).tolist() == list(range(8))
    with pytest.raises(ValueError, match="train_rows"):
        select_train_rows(uids, "bogus", 2)


def test_one_training_row_per_user_with_the_whole_history(tiny_data, make_config):
    config, dataset = _dataset(make_config, tiny_data, MAX_ITEM_LIST_LENGTH=20)
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

    _, dataset = _dataset(make_config, tiny_data)
    content = dataset.item_content
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    item = dataset.token2id("item_id", "i7")
    ids = content.text_ids[item][content.text_mask[item].bool()].tolist()
    assert tokenizer.decode(ids, skip_special_tokens=True) == "item 7 hat red"
    assert content.text_mask[0].sum() == 0  # padding item has no content


def test_items_missing_a_modality_are_masked_and_counted(tmp_path, make_config, caplog):
    write_tiny_dataset(tmp_path, no_text=(3, 4), no_image=(5,))
    _, dataset = _dataset(make_config, tmp_path)
    content = dataset.item_content
    assert content.text_mask[dataset.token2id("item_id", "i3")].sum() == 0
    assert content.has_image[dataset.token2id("item_id", "i5")] == 0
    assert content.has_image[dataset.token2id("item_id", "i6")] == 1
    assert int((content.text_mask[1:].sum(dim=1) == 0).sum()) == 2


def test_missing_image_file_names_file_and_line(tiny_data, make_config):
    (tiny_data / "tiny" / "images" / "i4.png").unlink()
    with pytest.raises(ContentError, match=r"tiny\.content\.jsonl, line 5: image file not found: .*i4\.png"):
        _dataset(make_config, tiny_data)


def test_corrupt_image_names_file_and_line(tiny_data, make_config):
    (tiny_data / "tiny" / "images" / "i2.png").write_bytes(b"not a png")
    with pytest.raises(ContentError, match=r"line 3: image file cannot be read: .*i2\.png"):
        _dataset(make_config, tiny_data)


def test_text_only_dataset_needs_no_images(tmp_path, make_config):
    write_tiny_dataset(tmp_path, with_images=False)
    with pytest.raises(ContentError, match="no item has an image"):
        _dataset(make_config, tmp_path)
    _, dataset = _dataset(make_config, tmp_path, item_modalities=["text"])
    assert dataset.item_content.has_image is None


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"line 2: not valid JSON"),
        ('{"text": "no id"}', r"line 2: each line needs a non-empty 'item_id'"),
        ('{"item_id": "i0", "text": "again"}', r"line 2: item_id 'i0' appears twice"),
        ('{"item_id": "i1", "text": 5}', r"line 2: field 'text' of item 'i1' must be a string or null, got int"),
    ],
)
def test_malformed_content_lines(tiny_data, line, message):
    path = _rewrite_line(tiny_data, 2, line)
    with pytest.raises(ContentError, match=message):
        read_content_file(path)


def test_missing_content_file(tmp_path, make_config):
    write_tiny_dataset(tmp_path)
    (tmp_path / "tiny" / "tiny.content.jsonl").unlink()
    with pytest.raises(ContentError, match=r"item content file not found: .*tiny\.content\.jsonl"):
        _dataset(make_config, tmp_path)


def test_text_is_never_split_by_recbole(tmp_path):
    write_tiny_dataset(tmp_path)
    path = tmp_path / "tiny" / "tiny.content.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows[0]["text"] = "Café   «naïve»\ttabs and  spaces"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert read_content_file(path)["i0"][0] == "Café   «naïve»\ttabs and  spaces"
