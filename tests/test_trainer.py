"""PMMRecTrainer's objectives (where their gradients go, what they teach, what they cost) and
the trainer features every model gets."""

import logging
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
from recbole_pmmrec.validation import SettingsError
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


def _fit_recording(trainer, train, **fit_args):
    """Fit without validation; the learning rate of every optimiser step taken."""
    rates = []
    trainer.optimizer.register_step_pre_hook(lambda optimizer, *_: rates.append(optimizer.param_groups[0]["lr"]))
    trainer.fit(train, None, verbose=False, **fit_args)
    return rates


@pytest.mark.parametrize("decay", ["none", "linear", "cosine"])
def test_the_learning_rate_warms_up_then_decays_step_by_step(tiny_data, make_config, caplog, decay):
    caplog.set_level(logging.INFO)
    _, trainer, train, _ = _setup(make_config, tiny_data, item_modalities=["text"], train_batch_size=8, epochs=2,
                                  lr_warmup_steps=4, lr_decay=decay)
    rates = _fit_recording(trainer, train, saved=False)
    base, total = 3e-3, 2 * len(train)
    assert len(rates) == total == trainer.lr_step and total >= 12
    assert rates[:4] == pytest.approx([base / 4, base / 2, 3 * base / 4, base], rel=1e-12)
    after = torch.tensor(rates[4:], dtype=torch.float64) / base
    done = torch.arange(1, total - 3, dtype=torch.float64) / (total - 4)  # share of the decay after each step
    expected = {"none": torch.ones_like(done), "linear": 1 - done, "cosine": (1 + torch.cos(torch.pi * done)) / 2}
    assert torch.allclose(after, expected[decay], rtol=0, atol=1e-12)
    if decay == "none":
        assert set(rates[3:]) == {base}  # exactly learning_rate
    else:
        assert abs(rates[-1]) < 1e-15 and rates[4] < base  # 0 at the last step
    lines = [m for m in (r.getMessage() for r in caplog.records) if "learning rate" in m and "epoch" in m]
    assert [line.split(":", 1)[1].strip() for line in lines] == [
        f"{rates[0]:.4g} -> {rates[len(train) - 1]:.4g}", f"{rates[len(train)]:.4g} -> {rates[-1]:.4g}"]


def test_default_settings_train_exactly_as_without_a_schedule(tiny_data, make_config):
    _, plain, train, _ = _setup(make_config, tiny_data, item_modalities=["text"], epochs=2)
    assert _fit_recording(plain, train, saved=False) == [3e-3] * (2 * len(train))
    assert not plain.optimizer._optimizer_step_post_hooks and "initial_lr" not in plain.optimizer.param_groups[0]
    # the schedule's machinery at a factor of exactly 1 (one warm-up step, no decay) changes nothing
    _, constant, train, _ = _setup(make_config, tiny_data, item_modalities=["text"], epochs=2, lr_warmup_steps=1)
    assert _fit_recording(constant, train, saved=False) == [3e-3] * (2 * len(train))
    assert plain.train_loss_dict == constant.train_loss_dict and len(plain.train_loss_dict) == 2


def test_the_encoders_trained_blocks_learn_at_their_own_rate(tiny_data, make_config, caplog):
    """One AdamW step moves each parameter by about its group's learning rate (the first
    step's update is lr * g / |g|): the trained text block at encoder_learning_rate, the
    new modules at learning_rate; with warm-up, the schedule scales both groups."""
    caplog.set_level(logging.INFO)
    model, trainer, train, _ = _setup(make_config, tiny_data, item_modalities=["text"], learning_rate=3e-3,
                                      encoder_learning_rate=1e-5, lr_warmup_steps=2)
    assert "learning rate 0.003), " in caplog.text and "pre-trained encoders (learning rate 1e-05)" in caplog.text
    block = dict(model.named_parameters())["item_encoder.text_encoder.backbone.encoder.layer.1.output.dense.weight"]
    fresh = model.user_encoder.transformer.layer[0].feed_forward.dense_1.weight
    assert block.requires_grad
    before = {"block": block.detach().clone(), "fresh": fresh.detach().clone()}
    model.train()
    trainer._schedule_learning_rate(len(train))  # warm-up: the first step at 1/2 of each rate
    losses = trainer.training_losses(next(iter(train)))
    (sum(losses) if isinstance(losses, tuple) else losses).backward()
    trainer.optimizer.step()
    moved = {"block": (block - before["block"]).abs().max().item(), "fresh": (fresh - before["fresh"]).abs().max().item()}
    assert 0.4e-5 < moved["block"] <= 0.51e-5 and 1.2e-3 < moved["fresh"] <= 1.6e-3, moved
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([3e-3, 1e-5])


class _Killed(Exception):
    pass


def test_a_resumed_run_continues_the_schedule_where_it_stopped(tiny_data, make_config):
    settings = dict(item_modalities=["text"], train_batch_size=8, epochs=3, lr_warmup_steps=5, lr_decay="cosine")
    _, whole, train, _ = _setup(make_config, tiny_data, **settings)
    uninterrupted = _fit_recording(whole, train)
    steps = len(train)

    _, killed, train, _ = _setup(make_config, tiny_data, **settings)
    taken = []

    def kill(*_):  # during epoch 2, after its resume state is written
        taken.append(1)
        if len(taken) > 2 * steps + 2:
            raise _Killed

    killed.optimizer.register_step_pre_hook(kill)
    with pytest.raises(_Killed):
        killed.fit(train, None, verbose=False)
    assert killed.lr_step == 2 * steps + 2

    _, resumed, train, _ = _setup(make_config, tiny_data, **settings)
    resumed.resume_checkpoint(killed.resume_file, train)
    assert resumed.lr_step == 2 * steps and resumed.start_epoch == 2
    assert _fit_recording(resumed, train) == uninterrupted[2 * steps:]
    assert resumed.train_loss_dict == whole.train_loss_dict and resumed.lr_step == 3 * steps


def test_the_schedule_survives_a_rebuilt_optimiser_and_skips_the_scalers_skipped_steps(tiny_data, make_config):
    _, trainer, train, _ = _setup(make_config, tiny_data, item_modalities=["text"], epochs=1, lr_warmup_steps=10)
    scheduler = trainer._schedule_learning_rate(len(train))
    trainer.model.train()
    scaler = torch.amp.GradScaler("cpu")
    for scale in (float("inf"), 1.0):  # a non-finite gradient: the scaler skips the step
        trainer.optimizer.zero_grad()
        scaler.scale(sum(trainer.training_losses(next(iter(train)))) * scale).backward()
        scaler.step(trainer.optimizer)
        scaler.update()
    assert trainer.lr_step == 1 and scheduler.last_epoch == 1
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(3e-3 * 2 / 10, rel=1e-12)
    trainer.optimizer = trainer._build_optimizer()  # a new optimiser, at learning_rate
    trainer._schedule_learning_rate(len(train))
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(3e-3 * 2 / 10, rel=1e-12)


@pytest.mark.parametrize("settings, message", [
    ({"lr_warmup_steps": -1}, r"lr_warmup_steps=-1: expected an integer >= 0"),
    ({"lr_warmup_steps": 2.5}, r"lr_warmup_steps=2.5: expected an integer"),
    ({"lr_decay": "exponential"}, r"lr_decay='exponential': expected one of \['none', 'linear', 'cosine'\]"),
])
def test_bad_schedule_settings_are_refused(settings, message, tmp_path):
    with pytest.raises(SettingsError, match=message):
        Config("PMMRec", "nowhere", config_dict={"data_path": str(tmp_path), **settings})
