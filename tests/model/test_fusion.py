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


def test_text_tokens_pooled_into_runs_of_nearly_equal_length():
    from recbole_pmmrec.model.fusion import pool_text_segments

    states = torch.arange(4 * 8, dtype=torch.float).reshape(4, 8, 1)
    mask = torch.tensor([[1] * 6 + [0] * 2, [1] * 7 + [0], [1, 1] + [0] * 6, [0] * 8])
    pooled, pooled_mask = pool_text_segments(states, mask, 3)
    assert pooled.shape == (4, 3, 1)
    assert pooled[0, :, 0].tolist() == [0.5, 2.5, 4.5]  # 6 tokens: (0,1) (2,3) (4,5), padding ignored
    assert pooled[1, :, 0].tolist() == [9.0, 11.5, 13.5]  # 7 tokens: runs of 3, 2, 2
    assert pooled[2, :2, 0].tolist() == [16.0, 17.0] and pooled_mask[2].tolist() == [1, 1, 0]  # kept as they are
    assert pooled_mask[0].tolist() == [1, 1, 1] and pooled_mask[3].tolist() == [0, 0, 0]  # no text: all masked
    assert pool_text_segments(states, mask, 0)[0] is states  # 0 keeps every token
    assert pool_text_segments(states, mask, 8)[0] is states


def test_pooling_text_runs_before_the_projection_equals_after_it():
    from recbole_pmmrec.model.fusion import pool_text_segments

    torch.manual_seed(0)
    projection = torch.nn.Linear(6, 4)
    states = torch.randn(3, 10, 6)
    mask = torch.tensor([[1] * 10, [1] * 5 + [0] * 5, [1] * 9 + [0]])
    before, mask_before = pool_text_segments(states, mask, 4)
    after, mask_after = pool_text_segments(projection(states), mask, 4)
    assert torch.equal(mask_before, mask_after)
    torch.testing.assert_close(projection(before) * mask_before.unsqueeze(-1), after * mask_after.unsqueeze(-1))
