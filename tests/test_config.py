"""The plugin's Config: overlays applied as named, bad settings refused before any data
is loaded, naming the key, the value and what was expected."""

import pytest
import yaml

from recbole_pmmrec.config import Config, properties_dir
from recbole_pmmrec.validation import RULES, SettingsError


def test_the_paper_overlay_applies_every_setting(tmp_path, tiny_bert, tiny_clip, make_config):
    from tests.conftest import build_model, write_tiny_dataset

    overlay = properties_dir() / "overlays" / "paper.yaml"
    settings = yaml.safe_load(overlay.read_text(encoding="utf-8"))
    config = Config("PMMRec", "ml-100k-text", config_file_list=[str(overlay)])
    for key, value in settings.items():
        assert config[key] == value, key
    # the same setting with tiny stand-in encoders (its hub weights cannot be downloaded here) builds
    write_tiny_dataset(tmp_path)
    stand_ins = {"text_encoder": str(tiny_bert), "image_encoder": str(tiny_clip), "image_pretrained": "random"}
    small = {**{k: v for k, v in settings.items() if k not in stand_ins}, **stand_ins}
    config, model, *_ = build_model(make_config, tmp_path, **small)
    assert config["train_rows"] == "user" and config["valid_metric"] == "Hit@10"
    assert not model.item_encoder.fusion.block.norm_first  # post-LN
    assert model.user_encoder.position_embedding.num_embeddings == 20
    assert model.item_encoder.text_encoder.trainable_layers == 2


@pytest.mark.parametrize("settings, message", [
    ({"nicl_wieght": 0.5}, r"unknown setting 'nicl_wieght' \(did you mean 'nicl_weight'\?\)"),
    ({"nid_replace_ratio": 1.5}, r"nid_replace_ratio=1.5: expected a number <= 1"),
    ({"nid_shuffle_ratio": -0.1}, r"nid_shuffle_ratio=-0.1: expected a number >= 0"),
    ({"rcl_weight": -1.0}, r"rcl_weight=-1.0: expected a number >= 0"),
    ({"nicl_temperature": 0}, r"nicl_temperature=0: expected a number > 0"),
    ({"hidden_size": 100, "n_heads": 3}, r"n_heads=3: it must divide hidden_size=100"),
    ({"hidden_size": 96, "fusion_n_heads": 5}, r"fusion_n_heads=5: it must divide hidden_size=96"),
    ({"text_max_length": "long"}, r"text_max_length='long': expected an integer"),
    ({"train_batch_size": 0}, r"train_batch_size=0: expected an integer >= 1"),
    ({"cache_frozen_item_features": "yes"}, r"cache_frozen_item_features='yes': expected true or false"),
    ({"item_modalities": ["text", "audio"]}, r"item_modalities=\['text', 'audio'\]: expected a non-empty list"),
    ({"fusion": "mlp"}, r"fusion='mlp': expected one of \['merge_attention', 'sum', 'concat'\]"),
    ({"train_rows": "all"}, r"train_rows='all': expected one of \['window', 'user', 'prefix'\]"),
    ({"hidden_dropout_prob": 1.0}, r"hidden_dropout_prob=1.0: expected a number < 1"),
    ({"test_items": "cold"}, r"test_items='cold': expected one of \['all', 'unseen'\]"),
    ({"transfer": ["item_embedding"]}, r"transfer=\['item_embedding'\]: expected all, or a list of"),
])
def test_bad_settings_fail_before_any_data_is_loaded(settings, message, tmp_path):
    # data_path names no dataset: the error must come from the settings alone
    with pytest.raises(SettingsError, match=message):
        Config("PMMRec", "nowhere", config_dict={"data_path": str(tmp_path), **settings})


def test_every_plugin_key_has_a_rule_and_the_defaults_pass_them():
    for file in (properties_dir() / "overall.yaml", properties_dir() / "model" / "PMMRec.yaml"):
        keys = set(yaml.safe_load(file.read_text(encoding="utf-8")))
        assert keys <= set(RULES), sorted(keys - set(RULES))
    Config("PMMRec", "ml-100k-text")  # the defaults pass
    Config("SASRec", "ml-100k-text", config_dict={"train_neg_sample_args": None, "n_heads": 3})  # not PMMRec's rules


def test_a_baselines_own_keys_are_not_mistaken_for_typos():
    config = Config("SASRec", "ml-100k-text", config_dict={"train_neg_sample_args": None, "hidden_dropout_prob": 0.2})
    assert config["hidden_dropout_prob"] == 0.2
