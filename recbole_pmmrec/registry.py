"""Plugin-first lookups of models, datasets and trainers, falling back to RecBole's own.

RecBole finds models, dataset classes and trainers only inside its own package; these
functions look in this plugin first, so one entry point runs PMMRec and every RecBole
built-in model on the same data. Every trainer gets the plugin's trainer features
(:class:`~recbole_pmmrec.trainer.PluginTrainerMixin`).
"""

import importlib

from recbole.data import create_dataset as recbole_create_dataset
from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_pmmrec.compat import end_anomaly_mode
from recbole_pmmrec.data.dataset import with_train_users
from recbole_pmmrec.data.derived import prepare_dataset
from recbole_pmmrec.distributed import barrier, rank
from recbole_pmmrec.trainer import with_plugin_features

# model name -> "module:Class" of its model, dataset and trainer
_PLUGIN_MODELS = {
    "PMMRec": (
        "recbole_pmmrec.model.pmmrec:PMMRec",
        "recbole_pmmrec.data.dataset:PMMRecDataset",
        "recbole_pmmrec.trainer:PMMRecTrainer",
    ),
}


def _load(target):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def plugin_models():
    return sorted(_PLUGIN_MODELS)


def get_model(model_name):
    """The model class for ``model_name``: this plugin's first, then RecBole's (whose import
    of its models would leave autograd in anomaly mode, see :mod:`recbole_pmmrec.compat`)."""
    if model_name in _PLUGIN_MODELS:
        return _load(_PLUGIN_MODELS[model_name][0])
    model_class = recbole_get_model(model_name)
    end_anomaly_mode()
    return model_class


def get_trainer(model_type, model_name):
    """The trainer class for ``model_name`` (this plugin's first, then RecBole's), with the
    plugin's trainer features mixed in."""
    if model_name in _PLUGIN_MODELS:
        return _load(_PLUGIN_MODELS[model_name][2])
    return with_plugin_features(recbole_get_trainer(model_type, model_name))


def create_dataset(config):
    """The filtered dataset for ``config``: this plugin's dataset class first, then RecBole's
    (with ``train_user_fraction`` < 1, the class RecBole picks extended by
    :func:`~recbole_pmmrec.data.dataset.with_train_users`; PMMRec's dataset applies it itself).

    A derived dataset the config names (the bundled default, merged sources) is written to
    disk first (:func:`recbole_pmmrec.data.derived.prepare_dataset`).
    """
    if rank() == 0:  # one process writes it, the others wait
        prepare_dataset(config)
    barrier()
    if config["model"] in _PLUGIN_MODELS:
        return _load(_PLUGIN_MODELS[config["model"]][1])(config)
    dataset = recbole_create_dataset(config)
    if config["train_user_fraction"] < 1:
        dataset.__class__ = with_train_users(type(dataset))
    return dataset
