"""The item encoder: the frozen part of each encoder cached once (on disk, float16, rebuilt
when anything it depends on changes), the top blocks run per step, pooled fusions projected
once per item."""

import json

import numpy as np
import pytest
import torch

from recbole_pmmrec.model.fusion import masked_mean
from tests.conftest import build_model, write_tiny_dataset

FP16 = {"atol": 2e-3, "rtol": 2e-3}  # the cache stores float16


def _uncached(model):
    model.item_encoder.cache_frozen = False
    model.item_encoder.clear_caches()
    return model


def _cache_files(folder):
    return sorted(p.name for p in (folder / "tiny" / ".pmmrec_cache").glob("*.npy"))


@pytest.mark.parametrize("trainable", [0, 1], ids=["frozen", "top-block-trains"])
def test_cached_and_uncached_paths_give_the_same_vectors_and_gradients(tiny_data, make_config, trainable):
    torch.manual_seed(0)
    _, model, *_ = build_model(make_config, tiny_data, text_trainable_layers=trainable,
                               image_trainable_layers=trainable, hidden_dropout_prob=0.0, attn_dropout_prob=0.0)
    model.eval()  # no dropout: both paths see the same network
    ids = torch.tensor([3, 1, 7, 12])
    results = []
    for cached in (True, False):
        if not cached:
            _uncached(model)
        model.zero_grad()
        vectors = model.item_encoder(ids)
        (vectors.fused.square().sum() + vectors.text.sum() + vectors.image.sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((vectors, grads))
    (cached, cached_grads), (fresh, fresh_grads) = results
    assert {k[0] for k in model.item_encoder._caches} == set()  # cleared for the uncached pass
    for a, b in zip(cached, fresh):
        assert torch.allclose(a, b, **FP16)
    assert cached_grads.keys() == fresh_grads.keys()
    if trainable:  # gradients reach the top block of each backbone, and agree
        assert any(".backbone.encoder.layer.1." in n for n in cached_grads)
        assert any(".backbone.transformer.resblocks.1." in n for n in cached_grads)
        assert not any(".backbone.encoder.layer.0." in n for n in cached_grads)
    for name, grad in cached_grads.items():
        assert torch.allclose(grad, fresh_grads[name], atol=5e-3, rtol=5e-2), name


def test_the_cache_holds_float16_and_a_second_run_reads_it(tiny_data, make_config):
    _, model, *_ = build_model(make_config, tiny_data, text_trainable_layers=1, image_trainable_layers=0)
    model.item_encoder(torch.tensor([1, 2]))
    files = _cache_files(tiny_data)
    assert [f.split("-")[:2] for f in files] == [["image", "split2"], ["text", "split1"]]
    for (modality, _), cache in model.item_encoder._caches.items():
        assert cache.array.dtype == np.float16 and cache.shape[0] == model.n_items and cache.itemsize == 2
    stamps = {p: p.stat().st_mtime_ns for p in (tiny_data / "tiny" / ".pmmrec_cache").glob("*.npy")}
    _, again, *_ = build_model(make_config, tiny_data, text_trainable_layers=1, image_trainable_layers=0)
    rows = []
    embeddings = again.item_encoder.text_encoder.backbone.embeddings
    embeddings.register_forward_hook(lambda module, args, kwargs, out: rows.append(len(out)), with_kwargs=True)
    again.item_encoder(torch.tensor([1, 2]))
    # read from disk: only the probe of a few items (shape and split checks) and the batch
    # went through the network, not the catalogue of 30 items
    assert max(rows) <= 4
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


@pytest.mark.parametrize("change", ["text", "split", "length", "encoder"])
def test_a_stale_cache_is_never_used(tiny_data, make_config, tmp_path, change):
    overrides = {"item_modalities": ["text"], "text_trainable_layers": 1}
    _, model, *_ = build_model(make_config, tiny_data, **overrides)
    model.item_encoder(torch.tensor([1]))
    before = set(_cache_files(tiny_data))
    if change == "text":
        path = tiny_data / "tiny" / "tiny.content.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows[3]["text"] = "item 3 a different text"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif change == "split":
        overrides["text_trainable_layers"] = 2
    elif change == "length":
        overrides["text_max_length"] = 3
    else:
        from tests.conftest import write_tiny_bert

        overrides["text_encoder"] = str(write_tiny_bert(tmp_path / "other", seed=1))
    _, changed, *_ = build_model(make_config, tiny_data, **overrides)
    vectors = changed.item_encoder(torch.arange(1, changed.n_items)).fused
    assert set(_cache_files(tiny_data)) - before  # a new file, keyed by what changed
    assert torch.allclose(vectors, _uncached(changed).item_encoder(torch.arange(1, changed.n_items)).fused, **FP16)


def test_a_cache_above_the_ram_budget_is_read_from_disk(tiny_data, make_config):
    _, model, *_ = build_model(make_config, tiny_data, item_modalities=["text"], text_trainable_layers=1,
                               feature_cache_ram_mb=0)
    ids = torch.tensor([4, 2, 9])
    vectors = model.eval().item_encoder(ids).fused
    assert model.item_encoder._caches[("text", False)].on_disk
    assert torch.allclose(vectors, _uncached(model).item_encoder(ids).fused, **FP16)


@pytest.mark.parametrize("fusion, modalities", [("sum", ["text", "image"]), ("concat", ["text", "image"]),
                                                 (None, ["text"])])
def test_pooling_before_the_projection_equals_pooling_projected_tokens(tiny_data, make_config, fusion, modalities):
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
        inputs, token_mask = encoder._inputs(modality, ids)
        states = encoder.encoder(modality).backbone_states(inputs, token_mask)
        mask = encoder._token_mask(modality, ids, states.shape[1])
        by_tokens[modality] = masked_mean(encoder.encoder(modality).proj(states), mask)
    expected = encoder.fusion.combine(by_tokens.get("text"), by_tokens.get("image"))
    assert torch.allclose(fast.fused, expected, **FP16)
    if len(modalities) == 2:
        assert torch.allclose(fast.text, by_tokens["text"], **FP16)
        assert torch.allclose(fast.image, by_tokens["image"], **FP16)
