"""PMMRec's losses, caches and evaluation contract."""

import math

import pytest
import torch
from recbole.data import data_preparation

from recbole_pmmrec.fusion import MergeAttentionFusion
from recbole_pmmrec.losses import inbatch_softmax_loss, next_item_targets, user_item_mask
from recbole_pmmrec.quick_start import build_config
from recbole_pmmrec.registry import create_dataset, get_model, get_trainer


def _model(make_config, data_path, **overrides):
    config = build_config("PMMRec", "tiny", config_dict=make_config(data_path, **overrides))
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    return config, get_model("PMMRec")(config, train._dataset), train, valid, test


def test_next_item_targets():
    seq = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0], [1, 2, 3, 4]])
    lengths = torch.tensor([3, 1, 4])
    target = torch.tensor([9, 10, 11])
    assert next_item_targets(seq, lengths, target).tolist() == [[6, 7, 9, 0], [10, 0, 0, 0], [2, 3, 4, 11]]
    assert next_item_targets(seq, lengths, target, every_position=False).tolist() == [
        [0, 0, 9, 0], [10, 0, 0, 0], [0, 0, 0, 11]]


def test_inbatch_loss_matches_a_hand_computation():
    states = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    candidates = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([1, 2])
    log_q = torch.tensor([0.0, math.log(0.5), math.log(0.25)])
    exclude = torch.tensor([[True, True, False], [False, False, False]])
    loss = inbatch_softmax_loss(states, labels, candidates, log_q, exclude)
    # row 0: candidate 0 excluded, own label kept despite its flag; row 1: nothing excluded
    row0 = [2.0 - math.log(0.5), 0.0 - math.log(0.25)]
    row1 = [2.0, 0.0 - math.log(0.5), 2.0 - math.log(0.25)]
    expected = 0.5 * (
        -(row0[0] - math.log(sum(math.exp(x) for x in row0)))
        - (row1[2] - math.log(sum(math.exp(x) for x in row1)))
    )
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_user_item_mask():
    index = torch.tensor([[0, 2, -1], [1, -1, -1]])
    assert user_item_mask(index, 3).tolist() == [[True, False, True], [False, True, False]]


def test_merge_attention_masks_a_missing_image():
    torch.manual_seed(0)
    fusion = MergeAttentionFusion(8, 2, 0.0, 1e-12).eval()
    text, text_mask = torch.randn(2, 3, 8), torch.ones(2, 3)
    no_image = torch.zeros(2, 4)
    a = fusion(text, text_mask, torch.randn(2, 4, 8), no_image)
    b = fusion(text, text_mask, torch.randn(2, 4, 8), no_image)
    assert torch.allclose(a, b, atol=1e-6)  # the (absent) image pixels change nothing
    c = fusion(text, text_mask, torch.randn(2, 4, 8), torch.ones(2, 4))
    assert not torch.allclose(a, c, atol=1e-3)


def test_frozen_features_are_cached_and_equal_to_fresh_ones(tiny_data, make_config):
    _, model, *_ = _model(make_config, tiny_data, text_trainable_layers=0, image_trainable_layers=0)
    model.eval()
    ids = torch.tensor([3, 1, 7])
    cached = model.item_encoder(ids).fused
    assert set(model.item_encoder._caches) == {("text", False), ("image", False)}
    model.item_encoder.cache_frozen = False
    fresh = model.item_encoder(ids).fused
    assert torch.allclose(cached, fresh, atol=1e-5)


@pytest.mark.parametrize("fusion, modalities", [("sum", ["text", "image"]), ("concat", ["text", "image"]),
                                                 (None, ["text"])])
def test_pooling_before_the_projection_equals_pooling_projected_tokens(tiny_data, make_config, fusion, modalities):
    from conftest import write_tiny_dataset
    from recbole_pmmrec.fusion import masked_mean

    write_tiny_dataset(tiny_data, no_text=(2,), no_image=(4,))  # items lacking a modality too
    overrides = {"item_modalities": modalities, "text_trainable_layers": 0, "image_trainable_layers": 0}
    if fusion:
        overrides["fusion"] = fusion
    _, model, *_ = _model(make_config, tiny_data, **overrides)
    encoder = model.item_encoder.eval()
    ids = torch.arange(1, model.n_items)
    fast = encoder(ids)  # pooled, frozen states cached
    assert all(key[1] for key in encoder._caches)
    by_tokens = {}
    for modality in modalities:
        states, mask = encoder._backbone(modality, ids)
        by_tokens[modality] = masked_mean(getattr(encoder, f"{modality}_encoder").proj(states), mask)
    expected = encoder.fusion.combine(by_tokens.get("text"), by_tokens.get("image"))
    assert torch.allclose(fast.fused, expected, atol=1e-5)
    if len(modalities) == 2:
        assert torch.allclose(fast.text, by_tokens["text"], atol=1e-5)
        assert torch.allclose(fast.image, by_tokens["image"], atol=1e-5)


def test_all_item_vectors_are_computed_once_per_evaluation(tiny_data, make_config):
    config, model, train, valid, test = _model(make_config, tiny_data, eval_batch_size=8)
    calls = []
    model.item_encoder.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    trainer = get_trainer(config["MODEL_TYPE"], "PMMRec")(config, model)
    assert len(valid) > 1  # several user batches
    trainer.evaluate(valid, load_best_model=False)
    assert sum(calls) == model.n_items - 1  # every item once, in chunks
    calls.clear()
    model.train()
    model.calculate_loss(next(iter(train)))
    trainer.evaluate(valid, load_best_model=False)  # weights may have changed: recomputed
    assert sum(calls[1:]) == model.n_items - 1


def test_exclude_history_items(tiny_data, make_config):
    _, model, _, _, test = _model(make_config, tiny_data, exclude_history_items=True)
    model.eval()
    batch = next(iter(test))[0]
    scores = model.full_sort_predict(batch)
    seq = batch["item_id_list"]
    assert torch.isinf(scores.gather(1, seq)).all()


def test_ce_loss_trains(tiny_data, make_config):
    _, model, train, _, _ = _model(make_config, tiny_data, loss_type="CE", item_modalities=["text"])
    batch = next(iter(train))
    loss = model.calculate_loss(batch)
    assert loss.item() == pytest.approx(math.log(model.n_items - 1), rel=0.2)  # ~uniform at init
    loss.backward()
    assert model.item_encoder.text_encoder.proj.weight.grad.abs().sum() > 0
