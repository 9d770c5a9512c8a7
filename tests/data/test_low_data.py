"""train_user_fraction: the training split keeps a nested share of its users, for PMMRec's
dataset and for RecBole's; validation and test never change."""

import logging

import pytest
import torch

from recbole_pmmrec.config import Config
from recbole_pmmrec.data.dataset import item_train_counts, training_history
from recbole_pmmrec.registry import create_dataset
from recbole_pmmrec.validation import SettingsError


def built(make_config, data_path, model, fraction, **overrides):
    """``(dataset, [train, valid, test])`` of the tiny dataset for ``model``."""
    settings = {"train_user_fraction": fraction, "item_modalities": ["text"], **overrides}
    dataset = create_dataset(Config(model, "tiny", config_dict=make_config(data_path, **settings)))
    return dataset, dataset.build()


def user_tokens(dataset, split):
    return set(dataset.id2token(dataset.uid_field, split.inter_feat[dataset.uid_field].unique().numpy()))


def assert_same_rows(inter, expected):
    assert inter.columns == expected.columns and len(inter) == len(expected)
    for field in expected.columns:
        assert torch.equal(inter[field], expected[field]), field


@pytest.mark.parametrize("model", ["PMMRec", "SASRec"])
def test_training_keeps_exactly_the_kept_users_rows_and_evaluation_is_unchanged(tiny_data, make_config, model,
                                                                                  caplog):
    _, whole = built(make_config, tiny_data, model, 1.0)
    caplog.set_level(logging.INFO)
    dataset, part = built(make_config, tiny_data, model, 0.25)
    uids = whole[0].inter_feat[dataset.uid_field]
    kept = part[0].inter_feat[dataset.uid_field].unique()
    assert len(kept) == 15 and len(uids.unique()) == 60  # round(0.25 * 60)
    assert_same_rows(part[0].inter_feat, whole[0].inter_feat[torch.isin(uids, kept)])
    assert "training rows of 15 of 60 users kept (135 of 540 rows)" in caplog.text  # 9 prefixes per user
    for split, whole_split in zip(part[1:], whole[1:]):  # every user, with the full history
        assert_same_rows(split.inter_feat, whole_split.inter_feat)
    # the history full ranking excludes (exclude_history_items) is the whole split's
    whole_pairs = getattr(whole[0], "training_pairs", None) or training_history(whole[0])
    assert all(torch.equal(a, b) for a, b in zip(part[0].training_pairs, whole_pairs))
    assert len(training_history(part[0])[0]) < len(whole_pairs[0])


def test_pmmrec_counts_items_in_the_kept_rows_only(tiny_data, make_config):
    dataset, (train, _, _) = built(make_config, tiny_data, "PMMRec", 0.25)
    assert torch.equal(dataset.item_train_counts, item_train_counts(train))
    assert dataset.item_train_counts.sum() < built(make_config, tiny_data, "PMMRec", 1.0)[0].item_train_counts.sum()


def test_kept_users_are_nested_across_fractions_and_the_same_for_every_model(tiny_data, make_config):
    kept = {}
    for model in ("PMMRec", "SASRec"):
        for fraction in (0.1, 0.5, 0.9):
            dataset, (train, _, _) = built(make_config, tiny_data, model, fraction)
            kept[model, fraction] = user_tokens(dataset, train)
    assert [len(kept["PMMRec", f]) for f in (0.1, 0.5, 0.9)] == [6, 30, 54]
    assert kept["PMMRec", 0.1] < kept["PMMRec", 0.5] < kept["PMMRec", 0.9]
    assert all(kept["PMMRec", f] == kept["SASRec", f] for f in (0.1, 0.5, 0.9))
    dataset, (train, _, _) = built(make_config, tiny_data, "SASRec", 0.5, seed=7)
    assert user_tokens(dataset, train) != kept["SASRec", 0.5]  # another seed draws other users


@pytest.mark.parametrize("value, expected", [(0, "a number > 0"), (1.5, "a number <= 1"), ("half", "a number")])
def test_a_fraction_outside_0_1_is_refused(tiny_data, make_config, value, expected):
    with pytest.raises(SettingsError, match=f"setting train_user_fraction={value!r}: expected {expected}$"):
        Config("SASRec", "tiny", config_dict=make_config(tiny_data, train_user_fraction=value))
