"""PMMRec's objectives: next-item prediction (in-batch softmax), NICL, RCL, and the
sequence corruption that NID and RCL train on."""

import torch
import torch.nn.functional as F


def next_item_targets(item_seq, item_seq_len, target, every_position=True):
    """Per-position targets ``[B, L]``: position t of a history predicts the item at t+1,
    the last real position predicts ``target``; 0 marks unsupervised positions.
    With ``every_position=False`` only the last real position is supervised."""
    batch = torch.arange(item_seq.shape[0], device=item_seq.device)
    if every_position:
        full = torch.cat([item_seq, torch.zeros_like(item_seq[:, :1])], dim=1)
        full[batch, item_seq_len] = target
        return full[:, 1:]
    targets = torch.zeros_like(item_seq)
    targets[batch, item_seq_len - 1] = target
    return targets


def inbatch_softmax_loss(states, labels, candidates, log_q=None, exclude=None):
    """Softmax cross-entropy of each state against the batch's unique items.

    states ``[N, d]``; labels ``[N]`` index the true item in candidates ``[U, d]``;
    log_q ``[U]`` (log sampling probability) is subtracted from the logits (logQ
    correction); ``exclude`` ``[N, U]`` marks candidates that are not negatives for a row
    (the user's other items), never the row's own label.
    """
    logits = states @ candidates.T
    if log_q is not None:
        logits = logits - log_q
    if exclude is not None:
        exclude = exclude.clone()
        exclude[torch.arange(len(labels), device=labels.device), labels] = False
        logits = logits.masked_fill(exclude, torch.finfo(logits.dtype).min)
    return F.cross_entropy(logits, labels)


def user_item_mask(item_index, n_candidates):
    """``[B, U]`` boolean: which of the U candidates occur in each user's row.

    ``item_index`` ``[B, K]`` holds candidate indices of a row's items, -1 for padding.
    """
    mask = torch.zeros(item_index.shape[0], n_candidates + 1, dtype=torch.bool, device=item_index.device)
    mask.scatter_(1, item_index % (n_candidates + 1), True)
    return mask[:, :n_candidates]


def nicl_loss(text, image, anchor, following, same_user, temperature):
    """Next-item enhanced cross-modal contrastive loss (NICL), symmetric over the modalities.

    ``text``/``image`` ``[U, d]`` are the batch's unique items' vectors; each anchor position
    has item ``anchor`` ``[N]`` followed by ``following`` ``[N]`` (indices into U). For the
    text anchor t_a the positives are v_a, t_f and v_f; the negatives are every other batch
    item in both modalities, except the anchor user's own items (``same_user`` ``[N, U]``).
    Multi-positive InfoNCE: -log(sum_pos exp(s/tau) / sum_all exp(s/tau)).
    """
    text, image = F.normalize(text, dim=-1), F.normalize(image, dim=-1)
    candidates = torch.cat([text, image])  # columns: text 0..U-1, image U..2U-1
    n_unique = text.shape[0]
    rows = torch.arange(len(anchor), device=anchor.device)
    positive = torch.zeros(len(anchor), 2 * n_unique, dtype=torch.bool, device=anchor.device)
    positive[rows, following] = True
    positive[rows, following + n_unique] = True
    excluded_base = same_user.repeat(1, 2)

    def one_side(anchor_vectors, self_column, other_modality_column):
        pos = positive.clone()
        pos[rows, other_modality_column] = True
        pos[rows, self_column] = False  # an item is not its own positive
        exclude = excluded_base & ~pos
        exclude[rows, self_column] = True
        logits = (anchor_vectors @ candidates.T / temperature).masked_fill(exclude, float("-inf"))
        log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
        return -(log_prob.masked_fill(~pos, float("-inf")).logsumexp(dim=1)).mean()

    return 0.5 * (
        one_side(text[anchor], anchor, anchor + n_unique) + one_side(image[anchor], anchor + n_unique, anchor)
    )


NOISE_CLEAN, NOISE_SHUFFLED, NOISE_REPLACED = 0, 1, 2


def corrupt_sequences(item_seq, item_seq_len, replacements, shuffle_ratio, replace_ratio, binary=False):
    """A corrupted copy of each history for noised item detection (NID).

    A random contiguous span of ``shuffle_ratio`` of each history is shuffled, then each
    real position is replaced with probability ``replace_ratio`` by an item drawn uniformly
    from ``replacements`` (a 1-d tensor of item ids: the training items, so that items held
    out for cold-start evaluation are never seen in training, not even as noise).
    Returns ``(noisy_seq, labels)``, labels per position: 0 clean, 1 shuffled (its item
    moved), 2 replaced (1 for both with ``binary``), -1 padding.
    """
    batch, length = item_seq.shape
    device = item_seq.device
    positions = torch.arange(length, device=device).expand(batch, length)
    real = positions < item_seq_len.unsqueeze(1)
    noisy = item_seq
    shuffled = replaced = torch.zeros_like(real)
    if shuffle_ratio > 0:
        span = (item_seq_len.float() * shuffle_ratio).round().long().clamp(min=2)
        span = torch.minimum(span, item_seq_len)
        start = (torch.rand(batch, device=device) * (item_seq_len - span + 1).float()).long()
        shuffled = (positions >= start.unsqueeze(1)) & (positions < (start + span).unsqueeze(1))
        # sort keys: positions outside the span keep their index, inside get a random key in the span
        random_keys = start.unsqueeze(1).float() + torch.rand(batch, length, device=device) * span.unsqueeze(1).float()
        keys = torch.where(shuffled, random_keys, positions.float())
        noisy = item_seq.gather(1, keys.argsort(dim=1))
    if replace_ratio > 0:
        replaced = real & (torch.rand(batch, length, device=device) < replace_ratio)
        drawn = replacements.to(device)[torch.randint(len(replacements), (batch, length), device=device)]
        noisy = torch.where(replaced, drawn, noisy)
    changed = noisy != item_seq
    labels = torch.where(real, NOISE_CLEAN, -1)
    labels = torch.where(shuffled & ~replaced & changed, NOISE_SHUFFLED, labels)
    labels = torch.where(replaced & changed, NOISE_REPLACED, labels)
    if binary:
        labels = torch.where(labels > 0, 1, labels)
    return noisy, labels


def rcl_loss(original, corrupted, temperature, others=None):
    """Robustness-aware contrastive loss (RCL): each user's original and corrupted sequence
    vectors ``[B, d]`` are a positive pair, other users in the batch negatives (symmetric).

    ``others`` = ``(all_original, all_corrupted, offset)``: the vectors of every user of a
    distributed batch, in which this batch's users start at row ``offset``.
    """
    all_original, all_corrupted, offset = others or (original, corrupted, 0)
    original, corrupted = F.normalize(original, dim=-1), F.normalize(corrupted, dim=-1)
    all_original, all_corrupted = F.normalize(all_original, dim=-1), F.normalize(all_corrupted, dim=-1)
    labels = offset + torch.arange(len(original), device=original.device)
    return 0.5 * (F.cross_entropy(original @ all_corrupted.T / temperature, labels)
                  + F.cross_entropy(corrupted @ all_original.T / temperature, labels))
