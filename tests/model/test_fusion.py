"""Fusion of text and image tokens."""

import torch

from recbole_pmmrec.model.fusion import MergeAttentionFusion


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
