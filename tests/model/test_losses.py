"""PMMRec's losses and the sequence corruption, on hand-made tensors."""

import math

import pytest
import torch

from recbole_pmmrec.model.losses import (
    NOISE_CLEAN, NOISE_REPLACED, NOISE_SHUFFLED, corrupt_sequences, inbatch_softmax_loss, next_item_targets, nicl_loss,
    rcl_loss, user_item_mask,
)


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


def test_corruption_labels_match_what_changed():
    torch.manual_seed(0)
    seq = torch.arange(1, 41).reshape(4, 10)
    seq[3, 6:] = 0
    lengths = torch.tensor([10, 10, 10, 6])
    noisy, labels = corrupt_sequences(seq, lengths, torch.arange(1, 1000), shuffle_ratio=0.3, replace_ratio=0.2)
    assert (labels[3, 6:] == -1).all() and (noisy[3, 6:] == 0).all()
    real = labels >= 0
    assert ((noisy != seq) == (real & (labels != NOISE_CLEAN))).all()
    # shuffled positions hold items of the same history, replaced ones (almost surely) do not
    for row in range(4):
        for t in range(int(lengths[row])):
            if labels[row, t] == NOISE_SHUFFLED:
                assert noisy[row, t] in seq[row, : lengths[row]]
    assert (labels == NOISE_SHUFFLED).any() and (labels == NOISE_REPLACED).any()
    _, binary = corrupt_sequences(seq, lengths, torch.arange(1, 1000), 0.3, 0.2, binary=True)
    assert set(binary.unique().tolist()) <= {-1, 0, 1}
    # replacements come only from the given items (the training items: cold items stay unseen)
    noisy, labels = corrupt_sequences(seq, lengths, torch.tensor([500, 501]), 0.0, 0.5)
    assert (labels == NOISE_REPLACED).any() and set(noisy[labels == NOISE_REPLACED].tolist()) <= {500, 501}


def test_losses_are_finite_and_positive():
    torch.manual_seed(0)
    text, image = torch.randn(6, 8), torch.randn(6, 8)
    same_user = torch.zeros(4, 6, dtype=torch.bool)
    value = nicl_loss(text, image, torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 4]), same_user, 0.1)
    assert torch.isfinite(value) and value > 0
    aligned = nicl_loss(image, image, torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 4]), same_user, 0.1)
    assert aligned < value  # identical modalities are better aligned
    original = torch.randn(5, 8)
    assert rcl_loss(original, original + 0.01 * torch.randn(5, 8), 0.1) < rcl_loss(original, torch.randn(5, 8), 0.1)
