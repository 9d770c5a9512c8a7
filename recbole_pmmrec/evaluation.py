"""Evaluation views built on RecBole's own loaders and evaluator (any sequential model).

- :func:`unseen_target_loader`: only the test rows whose target item never occurs in the
  training data (cold-start items); with :func:`ranking_only` and :func:`unseen_items`,
  those rows can also be ranked among the unseen items alone,
- :func:`evaluate_by_source`: the test result of each source of a merged dataset, ranking
  only that source's items.
"""

from contextlib import contextmanager

import numpy as np
import torch

from recbole_pmmrec.derived_datasets import source_of


def subset_loader(loader, keep):
    """A loader of the same kind over the rows of ``loader``'s dataset where ``keep`` is True."""
    dataset = loader._dataset
    subset = dataset.copy(dataset.inter_feat[torch.as_tensor(keep, dtype=torch.bool)])
    return type(loader)(loader.config, subset, loader._sampler, shuffle=False)


def unseen_items(train_dataset):
    """``[n_items]`` bool: True for each item that occurs nowhere in the training rows
    (neither as a target nor in a history); padding id 0 is False."""
    inter = train_dataset.inter_feat
    items = [inter[train_dataset.iid_field]]
    list_field = getattr(train_dataset, "item_id_list_field", None)
    if list_field in inter.interaction:
        items.append(inter[list_field].flatten())
    unseen = torch.ones(train_dataset.item_num, dtype=torch.bool)
    unseen[torch.cat(items)] = False
    unseen[0] = False
    return unseen


def unseen_target_loader(unseen, loader):
    """``loader`` restricted to rows whose target item is ``unseen`` (see :func:`unseen_items`);
    also returns how many rows that leaves."""
    targets = loader._dataset.inter_feat[loader._dataset.iid_field]
    keep = unseen[targets]
    if not keep.any():
        raise ValueError(
            "test_items=unseen: every test target occurs in the training data; build a cold-start "
            "dataset first (recbole_pmmrec.derived_datasets.make_cold_start_dataset)"
        )
    return subset_loader(loader, keep), int(keep.sum())


@contextmanager
def ranking_only(model, candidates):
    """Within the block, ``model.full_sort_predict`` scores only ``candidates`` (a bool
    tensor over item ids); every other item gets -inf."""
    original = model.full_sort_predict
    blocked = ~candidates.to(next(model.parameters()).device)

    def restricted(interaction):
        return original(interaction).masked_fill(blocked, float("-inf"))

    model.full_sort_predict = restricted
    try:
        yield
    finally:
        del model.full_sort_predict


def evaluate_by_source(trainer, dataset, loader, sources):
    """``{source: RecBole result}`` for a dataset merged from ``sources``: each source's
    test users, ranking that source's items only (scores of the model as it is now)."""
    users = np.array([source_of(t) for t in dataset.field2id_token[dataset.uid_field]])
    items = np.array([source_of(t) for t in dataset.field2id_token[dataset.iid_field]])
    row_users = loader._dataset.inter_feat[dataset.uid_field].numpy()
    results = {}
    for source in sources:
        keep = users[row_users] == source
        if not keep.any():
            continue
        candidates = torch.from_numpy(items == source)
        with ranking_only(trainer.model, candidates):
            results[source] = trainer.evaluate(subset_loader(loader, keep), load_best_model=False, show_progress=False)
    return results
