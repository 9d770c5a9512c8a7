"""PMMRec's RecBole contract: catalogue vectors once per evaluation, history exclusion, CE loss."""

import math

import pytest
import torch

from recbole_pmmrec.registry import get_trainer
from tests.conftest import build_model


def test_all_item_vectors_are_computed_once_per_evaluation(tiny_data, make_config):
    config, model, train, valid, test = build_model(make_config, tiny_data, eval_batch_size=8)
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


def test_ce_loss_trains(tiny_data, make_config):
    _, model, train, _, _ = build_model(make_config, tiny_data, loss_type="CE", item_modalities=["text"])
    batch = next(iter(train))
    loss = model.calculate_loss(batch)
    assert loss.item() == pytest.approx(math.log(model.n_items - 1), rel=0.2)  # ~uniform at init
    loss.backward()
    assert model.item_encoder.text_encoder.proj.weight.grad.abs().sum() > 0


def test_the_user_encoders_mask_is_recboles():
    from recbole.model.abstract_recommender import SequentialRecommender

    from recbole_pmmrec.model.user_encoder import causal_mask

    item_seq = torch.tensor([[3, 5, 2, 0, 0], [7, 0, 0, 0, 0], [1, 2, 3, 4, 5]])
    assert torch.equal(causal_mask(item_seq), SequentialRecommender.get_attention_mask(None, item_seq))


@pytest.mark.parametrize("n_layers", [1, 2])
def test_the_last_position_path_equals_every_position_then_gather(n_layers):
    from recbole_pmmrec.model.user_encoder import UserEncoder, UserEncoderSettings

    torch.manual_seed(0)
    encoder = UserEncoder(UserEncoderSettings(16, 32, n_layers, 2, "gelu", 1e-12, 6), 0.1, 0.1).eval()
    item_seq = torch.tensor([[3, 5, 2, 0, 0, 0], [7, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6], [4, 4, 1, 9, 0, 0]])
    vectors = torch.randn(4, 6, 16)
    last = (item_seq > 0).sum(dim=1) - 1
    every = encoder(vectors, item_seq)
    top = encoder(vectors, item_seq, last=last)
    assert top.shape == (4, 16)
    torch.testing.assert_close(top, every[torch.arange(4), last], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(top, every[:, 0])  # the positions differ: the comparison can fail
