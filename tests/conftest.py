"""Shared fixtures: tiny real encoders built from configs and a small generated dataset."""

import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image

WORDS = ["red", "green", "blue", "pale", "dark", "wool", "silk", "hat", "coat", "shoe", "bag", "ring"]


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


def write_tiny_bert(folder, seed=0):
    """A 2-layer BERT with a word-level vocabulary, saved like any HF checkpoint."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "item"] + WORDS + [str(i) for i in range(100)]
    BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    return folder


def write_tiny_clip_config(path):
    """An open_clip model config with a 2-block 32-wide ViT on 32x32 images."""
    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
    }
    Path(path).write_text(json.dumps(config), encoding="utf-8")
    return Path(path)


def write_tiny_dataset(root, name="tiny", n_users=60, n_items=30, seq_len=12, seed=0, with_images=True,
                       no_text=(), no_image=(), jump_prob=0.1):
    """Users walk the item catalogue in steps of one (jumping to a random item with
    ``jump_prob``), so the next item is predictable from the current one; each item has a
    distinct text and a distinct colour."""
    rng = random.Random(seed)
    folder = Path(root) / name
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user in range(n_users):
        item = rng.randrange(n_items)
        for t in range(seq_len):
            lines.append(f"u{user}\ti{item}\t{1000 * user + t}")
            item = (item + (1 if rng.random() < 1 - jump_prob else rng.randrange(n_items))) % n_items
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open(folder / f"{name}.content.jsonl", "w", encoding="utf-8") as f:
        for i in range(n_items):
            row = {"item_id": f"i{i}"}
            if i not in no_text:
                row["text"] = f"item {i} {WORDS[i % len(WORDS)]} {WORDS[(i // len(WORDS)) % len(WORDS)]}"
            if with_images and i not in no_image:
                colour = ((37 * i) % 256, (91 * i) % 256, (151 * i) % 256)
                Image.new("RGB", (20, 20), colour).save(folder / "images" / f"i{i}.png")
                row["image"] = f"images/i{i}.png"
            f.write(json.dumps(row) + "\n")
    return folder


def build_dataset(make_config, data_path, name="tiny", **overrides):
    """The Config and the filtered PMMRecDataset of a generated dataset."""
    from recbole_pmmrec.config import Config
    from recbole_pmmrec.registry import create_dataset

    config = Config("PMMRec", name, config_dict=make_config(data_path, **overrides))
    return config, create_dataset(config)


def build_model(make_config, data_path, name="tiny", **overrides):
    """``(config, model, train, valid, test)``: a PMMRec on a generated dataset."""
    from recbole.data import data_preparation

    from recbole_pmmrec.registry import get_model

    config, dataset = build_dataset(make_config, data_path, name, **overrides)
    train, valid, test = data_preparation(config, dataset)
    return config, get_model("PMMRec")(config, train._dataset), train, valid, test


def rewrite_line(folder, line_no, text, name="tiny"):
    """Replace line ``line_no`` of a generated dataset's content file."""
    path = Path(folder) / name / f"{name}.content.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    return write_tiny_clip_config(tmp_path_factory.mktemp("tiny_clip") / "tiny-vit.json")


@pytest.fixture
def tiny_data(tmp_path):
    write_tiny_dataset(tmp_path)
    return tmp_path


def tiny_config(data_path, tiny_bert, tiny_clip, tmp_path, **overrides):
    """Config dict for a fast PMMRec run on the tiny dataset."""
    config = {
        "data_path": str(data_path),
        "checkpoint_dir": str(Path(tmp_path) / "saved"),
        "text_encoder": str(tiny_bert),
        "image_encoder": str(tiny_clip),
        "image_pretrained": "random",
        "hidden_size": 32,
        "inner_size": 64,
        "n_heads": 2,
        "fusion_n_heads": 2,
        "text_trainable_layers": 1,
        "image_trainable_layers": 1,
        "MAX_ITEM_LIST_LENGTH": 10,
        "train_batch_size": 16,
        "eval_batch_size": 64,
        "learning_rate": 3e-3,
        "epochs": 20,
        "stopping_step": 100,
        "show_progress": False,
        "metrics": ["Hit", "NDCG", "MRR"],
        "topk": [5],
        "valid_metric": "NDCG@5",
        "train_neg_sample_args": None,
        "state": "WARNING",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    }
    config.update(overrides)
    return config


@pytest.fixture
def make_config(tiny_bert, tiny_clip, tmp_path):
    def make(data_path, **overrides):
        return tiny_config(data_path, tiny_bert, tiny_clip, tmp_path, **overrides)

    return make


def pytest_configure(config):
    # RecBole 1.2.1's own deprecation noise (pandas chained assignment, torch.cuda.amp)
    for module in ("recbole", "numpy"):
        config.addinivalue_line("filterwarnings", f"ignore::FutureWarning:{module}.*")
        config.addinivalue_line("filterwarnings", f"ignore::DeprecationWarning:{module}.*")
