"""Evaluation views built on RecBole's own loaders and evaluator (any sequential model).

Each view passes its candidate items to the trainer explicitly
(:meth:`~recbole_pmmrec.trainer.PluginTrainerMixin.evaluate`'s ``candidates``):

- :func:`unseen_target_loader`: only the test rows whose target item never occurs in the
  training data (cold-start items); with ``candidates=unseen_items(...)`` those rows are
  also ranked among the unseen items alone,
- :func:`evaluate_by_source`: the test result of each source of a merged dataset, ranking
  only that source's items.
"""

import numpy as np
import torch

from recbole_pmmrec.data.dataset import item_train_counts
from recbole_pmmrec.data.derived import source_of


def subset_loader(loader, keep):
    """A loader of the same kind over the rows of ``loader``'s dataset where ``keep`` is True."""
    dataset = loader._dataset
    subset = dataset.copy(dataset.inter_feat[torch.as_tensor(keep, dtype=torch.bool)])
    return type(loader)(loader.config, subset, loader._sampler, shuffle=False)


def unseen_items(train_dataset):
    """``[n_items]`` bool: True for each item that occurs nowhere in the training rows
    (neither as a target nor in a history); padding id 0 is False."""
    unseen = item_train_counts(train_dataset) == 0
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
            "dataset first (recbole_pmmrec.data.derived.make_cold_start_dataset)"
        )
    return subset_loader(loader, keep), int(keep.sum())


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
        results[source] = trainer.evaluate(
            subset_loader(loader, keep), load_best_model=False, candidates=torch.from_numpy(items == source)
        )
    return results
