"""Training objectives of PMMRec (next-item prediction)."""

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
