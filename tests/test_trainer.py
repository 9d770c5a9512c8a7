"""PMMRecTrainer's objectives (where their gradients go, what they teach, what they cost) and
the trainer features every model gets."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from recbole.data import data_preparation

from recbole_pmmrec.model.losses import NOISE_CLEAN
from recbole_pmmrec.config import Config
from recbole_pmmrec.evaluation import subset_loader
from recbole_pmmrec.registry import create_dataset, get_model, get_trainer
from recbole_pmmrec.trainer import PluginTrainerMixin
from tests.conftest import build_model, write_tiny_dataset

OFF = {"nicl_weight": 0.0, "nid_weight": 0.0, "rcl_weight": 0.0}


def _setup(make_config, data_path, **overrides):
    torch.manual_seed(0)
    config, model, train, valid, _ = build_model(make_config, data_path, **overrides)
    trainer = get_trainer(config["MODEL_TYPE"], "PMMRec")(config, model)
    return model, trainer, train, valid


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


@pytest.mark.parametrize(
    "objective, reaches, never",
    [
        ("nicl", ["item_encoder.text_encoder.proj", "item_encoder.image_encoder.proj",
                  "item_encoder.text_encoder.backbone.encoder.layer.1"],
         ["user_encoder", "nid_head", "item_encoder.fusion"]),
        ("nid", ["nid_head", "user_encoder", "item_encoder.fusion"], []),
        ("rcl", ["user_encoder", "item_encoder.fusion"], ["nid_head"]),
    ],
)
def test_gradients_reach_exactly_the_right_modules(tiny_data, make_config, objective, reaches, never):
    weights = dict(OFF, nid_weight=1.0)  # the NID head exists in every case
    weights[f"{objective}_weight"] = 1.0
    model, trainer, train, _ = _setup(make_config, tiny_data, **weights)
    if objective != "nid":
        trainer.weights["nid"] = 0.0
        trainer.loss_names = ["rec", objective]
    model.train()
    losses = trainer.training_losses(next(iter(train)))
    term = losses[trainer.loss_names.index(objective)]
    assert torch.isfinite(term) and term > 0
    touched = _grads(model, term)
    for prefix in reaches:
        assert any(n.startswith(prefix) for n in touched), (prefix, sorted(touched)[:5])
    for prefix in never + ["item_encoder.text_encoder.backbone.encoder.layer.0",
                           "item_encoder.text_encoder.backbone.embeddings"]:
        assert not any(n.startswith(prefix) for n in touched), prefix


def test_nicl_skipped_with_one_modality(tiny_data, make_config, caplog):
    _, trainer, *_ = _setup(make_config, tiny_data, item_modalities=["text"], nicl_weight=1.0)
    assert trainer.loss_names == ["rec", "nid", "rcl"]


def _train_steps(trainer, train, steps):
    """``steps`` optimiser steps of PMMRecTrainer's full objective, cycling over ``train``."""
    batches = list(train)
    trainer.model.train()
    for step in range(steps):
        losses = trainer.training_losses(batches[step % len(batches)])
        trainer.optimizer.zero_grad()
        (sum(losses) if isinstance(losses, tuple) else losses).backward()
        trainer.optimizer.step()
    return batches


def test_nid_detects_noise_well_above_the_majority_rate(tmp_path, make_config):
    # a noiseless walk, so every replaced or moved item breaks the pattern; NID learns slowly
    # (it must learn to compare a position with the one before), hence 1,000 steps
    write_tiny_dataset(tmp_path, n_users=200, jump_prob=0.0)
    model, trainer, train, _ = _setup(
        make_config, tmp_path, **dict(OFF, nid_weight=1.0), item_modalities=["text"],
        text_trainable_layers=0, train_batch_size=32,
    )
    batches = _train_steps(trainer, train, 1000)
    model.eval()
    correct = total = clean = 0
    with torch.no_grad():
        for interaction in batches:
            noisy_seq, noise_labels = trainer.corrupt(interaction)
            batch = model.encode_batch(interaction, noisy_seq)
            real = noise_labels >= 0
            predicted = model.noise_logits(batch.noisy_states[real]).argmax(dim=-1)
            labels = noise_labels[real]
            correct += int((predicted == labels).sum())
            clean += int((labels == NOISE_CLEAN).sum())
            total += len(labels)
    accuracy, majority = correct / total, clean / total
    assert accuracy > majority + 0.07, (accuracy, majority)


def _modality_gap(model):
    """Mean cosine of an item's own text and image vectors minus that of other items'."""
    model.eval()
    with torch.no_grad():
        vectors = model.item_encoder(torch.arange(1, model.n_items))
    sims = F.normalize(vectors.text, dim=-1) @ F.normalize(vectors.image, dim=-1).T
    n = len(sims)
    own = sims.diagonal().mean()
    others = (sims.sum() - sims.diagonal().sum()) / (n * n - n)
    return float(own - others)


def test_nicl_aligns_an_items_text_and_image(tiny_data, make_config):
    gaps = {}
    for weight in (0.0, 1.0):
        model, trainer, train, _ = _setup(make_config, tiny_data, **dict(OFF, nicl_weight=weight))
        _train_steps(trainer, train, 300)
        gaps[weight] = _modality_gap(model)
    assert gaps[1.0] > 0.3 and gaps[1.0] > gaps[0.0] + 0.2, gaps


def _robustness_gap(model, trainer, train):
    """Mean cosine of a user's original and corrupted sequence vectors minus that of other users'."""
    model.eval()
    torch.manual_seed(2)
    with torch.no_grad():
        interaction = next(iter(train))
        batch = model.encode_batch(interaction, trainer.corrupt(interaction)[0])
        original = F.normalize(batch.last_states(batch.states), dim=-1)
        corrupted = F.normalize(batch.last_states(batch.noisy_states), dim=-1)
    sims = original @ corrupted.T
    n = len(sims)
    return float(sims.diagonal().mean() - (sims.sum() - sims.diagonal().sum()) / (n * n - n))


def test_rcl_pulls_a_users_corrupted_history_towards_the_original(tiny_data, make_config):
    gaps = {}
    for weight in (0.0, 1.0):
        model, trainer, train, _ = _setup(make_config, tiny_data, **dict(OFF, rcl_weight=weight, nid_weight=1e-9))
        _train_steps(trainer, train, 300)
        gaps[weight] = _robustness_gap(model, trainer, train)
    # next-item training alone already keeps a lightly corrupted history near the original
    # (measured: 0.76); RCL adds to that (measured: 0.85)
    assert gaps[1.0] > 0.5 and gaps[1.0] > gaps[0.0] + 0.04, gaps


def test_a_zero_weight_removes_the_cost_and_the_log_entry(tiny_data, make_config):
    """The cost is counted in user-encoder passes (wall time of tiny models is noise)."""
    for name, weights in (("all", {"nicl_weight": 0.1, "nid_weight": 0.1, "rcl_weight": 0.1}), ("rec", OFF)):
        model, trainer, train, _ = _setup(make_config, tiny_data, **weights)
        calls = []
        model.user_encoder.register_forward_hook(lambda *a: calls.append(1))
        model.train()
        interaction = next(iter(train))
        for _ in range(7):
            losses = trainer.training_losses(interaction)
            (sum(losses) if isinstance(losses, tuple) else losses).backward()
        line = trainer._generate_train_loss_output(0, 0.0, 1.0, losses)
        if name == "all":
            assert len(calls) == 14  # the corrupted copy costs a second user-encoder pass
            assert all(f"{term} loss" in line for term in ("rec", "nicl", "nid", "rcl"))
        else:
            assert len(calls) == 7 and model.nid_head is None
            assert "nicl" not in line and "nid" not in line and "rcl" not in line


def test_runs_started_in_the_same_second_get_distinct_checkpoints(tiny_data, make_config):
    config, model, *_ = build_model(make_config, tiny_data)
    files = {get_trainer(config["MODEL_TYPE"], "PMMRec")(config, model).saved_model_file for _ in range(3)}
    assert len(files) == 3 and all(Path(f).name.startswith("PMMRec-") for f in files)


def test_every_models_trainer_records_epoch_times_and_ranks_among_candidates(tiny_data, make_config):
    """The plugin's trainer features reach RecBole's own models (here SASRec)."""
    config = Config("SASRec", "tiny", config_dict=make_config(tiny_data, epochs=2, loss_type="CE"))
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = get_model("SASRec")(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "SASRec")(config, model)
    assert isinstance(trainer, PluginTrainerMixin)
    trainer.fit(train, valid, saved=False)
    assert len(trainer.epoch_seconds) == 2 and all(s > 0 for s in trainer.epoch_seconds)
    # only the rows whose target is one of three items, ranked among those three items alone
    three = [dataset.token2id("item_id", t) for t in ("i1", "i2", "i3")]
    targets = test._dataset.inter_feat["item_id"]
    rows = subset_loader(test, torch.isin(targets, torch.tensor(three)))
    candidates = torch.zeros(dataset.item_num, dtype=torch.bool)
    candidates[three] = True
    among_three = trainer.evaluate(rows, load_best_model=False, candidates=candidates)
    assert among_three["hit@5"] == 1.0 and among_three["mrr@5"] >= 1 / 3
    among_all = trainer.evaluate(rows, load_best_model=False)
    assert among_all["mrr@5"] <= among_three["mrr@5"]


def test_bfloat16_autocast_losses_agree_with_float32(tiny_data, make_config):
    """RecBole's enable_amp runs the step under autocast (bfloat16 on the CPU)."""
    model, trainer, train, _ = _setup(make_config, tiny_data, hidden_dropout_prob=0.0, attn_dropout_prob=0.0,
                                      **{"nicl_weight": 1.0, "nid_weight": 1.0, "rcl_weight": 1.0})
    model.eval()  # no dropout: the two passes differ by precision only
    interaction = next(iter(train))
    noisy_seq, noise_labels = trainer.corrupt(interaction)
    fp32 = trainer.objective_losses(interaction, noisy_seq, noise_labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = trainer.objective_losses(interaction, noisy_seq, noise_labels)
    for a, b in zip(fp32, bf16):
        assert torch.isfinite(b) and abs(float(b) - float(a)) <= 0.02 * abs(float(a)) + 1e-3, (float(a), float(b))


def test_corrupted_copies_never_change_the_candidate_pools(tmp_path, make_config):
    """NID's replacement items are encoded for the corrupted states but are no negatives:
    the next-item and NICL losses are the same with and without a corrupted copy."""
    write_tiny_dataset(tmp_path, n_items=300)  # a batch sees a part of the catalogue
    model, trainer, train, _ = _setup(make_config, tmp_path, hidden_dropout_prob=0.0, attn_dropout_prob=0.0,
                                      nicl_weight=1.0, nid_weight=1.0, rcl_weight=0.0, nid_replace_ratio=0.5)
    model.eval()
    interaction = next(iter(train))
    noisy_seq, _ = trainer.corrupt(interaction)
    clean, corrupted = model.encode_batch(interaction), model.encode_batch(interaction, noisy_seq)
    brought_in = set(noisy_seq.unique().tolist()) - set(interaction["item_id_list"].unique().tolist()) \
        - set(interaction["item_id"].tolist())
    assert brought_in and not brought_in & set(corrupted.unique.tolist())
    assert torch.equal(clean.unique, corrupted.unique)
    assert torch.allclose(model.recommendation_loss(clean), model.recommendation_loss(corrupted))
    assert torch.allclose(trainer._nicl(clean), trainer._nicl(corrupted))


@pytest.mark.parametrize("model_name", ["PMMRec", "SASRec"])
def test_excluding_history_masks_the_users_whole_history_for_every_model(tmp_path, make_config, model_name):
    write_tiny_dataset(tmp_path, seq_len=20)  # longer than MAX_ITEM_LIST_LENGTH (10)
    overrides = {"loss_type": "CE"} if model_name == "SASRec" else {}
    config = Config(model_name, "tiny", config_dict=make_config(tmp_path, exclude_history_items=True, **overrides))
    dataset = create_dataset(config)
    train, _, test = data_preparation(config, dataset)
    model = get_model(model_name)(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    trainer.exclude_training_items(train._dataset)
    trainer.tot_item_num = dataset.item_num  # set by RecBole's evaluate() before its batches
    model.eval()
    interaction, *_ = next(iter(test))
    _, scores, _, _ = trainer._full_sort_batch_eval((interaction, None, None, None))
    raw = {}  # the .inter file itself: each user's items in time order
    for line in (tmp_path / "tiny" / "tiny.inter").read_text().splitlines()[1:]:
        user, item, _ = line.split("\t")
        raw.setdefault(user, []).append(dataset.token2id("item_id", item))
    for row, user in enumerate(interaction["user_id"].tolist()):
        history = torch.tensor(raw[dataset.id2token("user_id", user)][:-1])  # every item before the test target
        assert len(history) > 10 and torch.isinf(scores[row, history]).all()
        others = torch.ones(dataset.item_num, dtype=torch.bool)
        others[history], others[0] = False, False
        assert torch.isfinite(scores[row, others]).all()
