"""RecBole ``Config`` that also reads this plugin's ``properties/`` YAML files."""

import os
from pathlib import Path

from recbole.config import Config as RecBoleConfig

from recbole_pmmrec.registry import get_model


def properties_dir():
    """The ``properties/`` folder: inside the package when installed, beside it in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "properties", here.parent / "properties"):
        if (candidate / "model").is_dir():
            return candidate
    raise FileNotFoundError(f"recbole_pmmrec's properties/ folder was not found near {here}")


class Config(RecBoleConfig):
    """RecBole's configurator with plugin-first model lookup and plugin YAML defaults.

    Precedence, lowest first: RecBole's overall/model/dataset YAML and its quick-start
    settings, then ``properties/model/<model>.yaml`` and ``properties/dataset/<dataset>.yaml``
    of this plugin, then config files, the config dict and the command line.
    """

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise KeyError(
                    "the model must be given: --model=NAME, a config file, or config_dict"
                )
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
            if dataset is None:
                raise KeyError(
                    "the dataset must be given: --dataset=NAME, a config file, or config_dict"
                )
        if isinstance(model, str):
            return model, get_model(model), dataset
        return model.__name__, model, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        props = properties_dir()
        for file in (props / "model" / f"{model}.yaml", props / "dataset" / f"{dataset}.yaml"):
            if os.path.isfile(file):
                self._update_internal_config_dict(str(file))
