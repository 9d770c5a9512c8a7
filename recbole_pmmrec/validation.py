"""The plugin's settings checked when a Config is built, before any data is loaded.

One rule per key of ``properties/overall.yaml`` and ``properties/model/PMMRec.yaml`` (a test
keeps the two in step): its type, range or choices. A setting that breaks its rule, a key
that looks like a misspelt plugin key (``nicl_wieght``), heads that do not divide the
width, or a history longer than a transferred user encoder's positions are errors naming
the key, the value and what was expected.
"""

import difflib

FUSIONS = ("merge_attention", "sum", "concat")
COMPONENT_NAMES = ("text_encoder", "image_encoder", "fusion", "user_encoder")


def name_list(value):
    """A list of names from a list, or from the command line's ``"a,b"`` / ``"[a, 'b']"``."""
    if not isinstance(value, str):
        return list(value)
    return [n.strip(" '\"") for n in value.strip("[] ").split(",") if n.strip(" '\"")]


class SettingsError(ValueError):
    """A setting has the wrong type, is out of range, or is unknown."""


def _number(low=None, high=None, integer=False, low_open=False, high_open=False, optional=False):
    kind = "an integer" if integer else "a number"

    def check(value):
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            return f"{kind}"
        if low is not None and (value <= low if low_open else value < low):
            return f"{kind} {'>' if low_open else '>='} {low}"
        if high is not None and (value >= high if high_open else value > high):
            return f"{kind} {'<' if high_open else '<='} {high}"
        return None

    return check


def _boolean(value):
    return None if isinstance(value, bool) else "true or false"


def _text(optional=True):
    return lambda value: None if isinstance(value, str) or (optional and value is None) else "a string"


def _choice(*options, optional=False):
    return lambda value: None if value in options or (optional and value is None) else f"one of {list(options)}"


def _modalities(value):
    ok = isinstance(value, list) and value and set(value) <= {"text", "image"} and len(set(value)) == len(value)
    return None if ok else "a non-empty list of text and/or image"


def _transfer(value):
    names = name_list(value) if isinstance(value, (str, list)) else None
    ok = names == ["all"] or (names and set(names) <= set(COMPONENT_NAMES))
    return None if ok else f"all, or a list of {list(COMPONENT_NAMES)}"


def _sources(value):
    return None if value is None or (isinstance(value, list) and len(value) >= 2) else "a list of 2+ datasets"


POSITIVE_INT, COUNT = _number(1, integer=True), _number(0, integer=True)
RATIO, DROPOUT = _number(0, 1), _number(0, 1, high_open=True)
WEIGHT, POSITIVE = _number(0), _number(0, low_open=True)

RULES = {
    # properties/overall.yaml
    "source_datasets": _sources,
    "test_items": _choice("all", "unseen", optional=True),
    "exclude_history_items": _boolean,
    "train_user_fraction": _number(0, 1, low_open=True),
    "lr_warmup_steps": _number(0, integer=True),
    "lr_decay": _choice("none", "linear", "cosine"),
    "console_log": _choice("all", "epochs", optional=True),
    "trust_checkpoint": _boolean,
    "resume_from": _text(),
    "nproc": POSITIVE_INT,
    "world_size": _number(1, integer=True, optional=True),
    "ip": _text(optional=False),
    "port": _number(1, 65535, integer=True),
    "offset": COUNT,
    # properties/model/PMMRec.yaml
    "item_modalities": _modalities,
    "text_encoder": _text(),
    "text_max_length": POSITIVE_INT,
    "text_trainable_layers": COUNT,
    "image_encoder": _text(optional=False),
    "image_pretrained": _text(),
    "image_trainable_layers": COUNT,
    "bad_images": _choice("error", "mask"),
    "cache_frozen_item_features": _boolean,
    "feature_cache_dir": _text(),
    "feature_cache_ram_mb": WEIGHT,
    "item_encode_batch_size": POSITIVE_INT,
    "fusion": _choice(*FUSIONS),
    "fusion_n_heads": POSITIVE_INT,
    "modality_type_embedding": _boolean,
    "fusion_image_grid": COUNT,
    "fusion_text_tokens": COUNT,
    "fusion_dropout_prob": _number(0, 1, high_open=True, optional=True),
    "fusion_norm_first": _boolean,
    "hidden_size": POSITIVE_INT,
    "n_layers": POSITIVE_INT,
    "n_heads": POSITIVE_INT,
    "inner_size": POSITIVE_INT,
    "hidden_dropout_prob": DROPOUT,
    "attn_dropout_prob": DROPOUT,
    "hidden_act": _choice("gelu", "relu", "swish", "tanh", "sigmoid"),
    "layer_norm_eps": POSITIVE,
    "initializer_range": POSITIVE,
    "loss_type": _choice("inbatch", "CE"),
    "logq_correction": _boolean,
    "mask_history_negatives": _boolean,
    "train_rows": _choice("window", "user", "prefix"),
    "train_neg_sample_args": lambda value: None,  # RecBole's own (it checks it)
    "learner": _text(optional=False),
    "learning_rate": POSITIVE,
    "encoder_learning_rate": _number(0, low_open=True, optional=True),
    "weight_decay": WEIGHT,
    "train_batch_size": POSITIVE_INT,
    "nicl_weight": WEIGHT,
    "nicl_temperature": POSITIVE,
    "nid_weight": WEIGHT,
    "nid_classes": _choice(2, 3),
    "nid_shuffle_ratio": RATIO,
    "nid_replace_ratio": RATIO,
    "rcl_weight": WEIGHT,
    "rcl_temperature": POSITIVE,
    "transfer_from": _text(),
    "transfer": _transfer,
}


def check_settings(config, checked_keys, known_keys, plugin_model):
    """Raise :class:`SettingsError` on the first broken rule among ``checked_keys`` of
    ``config`` (a Config whose final values are merged), or for a given key that is not in
    ``known_keys`` but close to a plugin key."""
    for key in config.external_config_dict:
        close = [] if key in known_keys else difflib.get_close_matches(key, list(RULES), n=1, cutoff=0.8)
        if close:
            raise SettingsError(f"unknown setting {key!r} (did you mean {close[0]!r}?)")
    for key in checked_keys:
        problem = RULES[key](config[key])
        if problem:
            raise SettingsError(f"setting {key}={config[key]!r}: expected {problem}")
    if plugin_model:
        _check_widths(config)
        _check_transferred_positions(config)


def _check_widths(config):
    hidden = config["hidden_size"]
    if hidden % config["n_heads"]:
        raise SettingsError(f"setting n_heads={config['n_heads']}: it must divide hidden_size={hidden}")
    if config["fusion"] == "merge_attention" and len(config["item_modalities"]) == 2 and hidden % config["fusion_n_heads"]:
        raise SettingsError(f"setting fusion_n_heads={config['fusion_n_heads']}: it must divide hidden_size={hidden}")


def _check_transferred_positions(config):
    source = getattr(config, "transfer_checkpoint", None)
    shapes = source.manifest["components"].get("user_encoder") if source is not None else None
    if not shapes or config["transfer"] not in ("all", ["all"]) and "user_encoder" not in config["transfer"]:
        return
    positions = shapes["position_embedding.weight"][0]
    if config["MAX_ITEM_LIST_LENGTH"] > positions:
        raise SettingsError(
            f"setting MAX_ITEM_LIST_LENGTH={config['MAX_ITEM_LIST_LENGTH']}: the user encoder of transfer_from "
            f"{source.path} has {positions} positions; use at most {positions}, or transfer without user_encoder"
        )
