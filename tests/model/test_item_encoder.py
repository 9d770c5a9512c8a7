"""The item encoder: frozen features cached once, pooled fusions projected once per item."""

import pytest
import torch

from tests.conftest import build_model, write_tiny_dataset


def test_frozen_features_are_cached_and_equal_to_fresh_ones(tiny_data, make_config):
    _, model, *_ = build_model(make_config, tiny_data, text_trainable_layers=0, image_trainable_layers=0)
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
    from recbole_pmmrec.model.fusion import masked_mean

    write_tiny_dataset(tiny_data, no_text=(2,), no_image=(4,))  # items lacking a modality too
    overrides = {"item_modalities": modalities, "text_trainable_layers": 0, "image_trainable_layers": 0}
    if fusion:
        overrides["fusion"] = fusion
    _, model, *_ = build_model(make_config, tiny_data, **overrides)
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
