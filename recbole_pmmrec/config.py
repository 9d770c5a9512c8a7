"""RecBole ``Config`` that also reads this plugin's ``properties/`` YAML files."""

import os
from pathlib import Path

from recbole.config import Config as RecBoleConfig

from recbole_pmmrec.registry import get_model, plugin_models
from recbole_pmmrec.transfer import inherited_settings, name_list


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
    settings, then this plugin's ``properties/overall.yaml``, ``properties/model/<model>.yaml``
    and ``properties/dataset/<dataset>.yaml``, then (with ``transfer_from``) the
    checkpoint's architecture settings, then config files, the config dict and the command
    line.

    A dataset given as ``a,b`` names the merged dataset ``a+b`` with ``source_datasets: [a, b]``.
    """

    def _merge_external_config_dict(self):
        super()._merge_external_config_dict()
        sources = self.external_config_dict.get("source_datasets")
        if isinstance(sources, str):  # "a,b" or "[a,b]" from the command line
            self.external_config_dict["source_datasets"] = name_list(sources)

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise KeyError(
                    "the model must be given: --model=NAME, a config file, or config_dict"
                )
        sources = self.external_config_dict.get("source_datasets")
        if dataset is None:
            dataset = self.external_config_dict.get("dataset") or ("+".join(sources) if sources else None)
            if dataset is None:
                raise KeyError(
                    "the dataset must be given: --dataset=NAME, a config file, or config_dict"
                )
        if isinstance(dataset, str) and "," in dataset:
            sources = self.external_config_dict["source_datasets"] = name_list(dataset)
            dataset = "+".join(sources)
        if isinstance(model, str):
            return model, get_model(model), dataset
        return model.__name__, model, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        props = properties_dir()
        for file in (
            props / "overall.yaml",
            props / "model" / f"{model}.yaml",
            props / "dataset" / f"{dataset}.yaml",
        ):
            if os.path.isfile(file):
                self._update_internal_config_dict(str(file))
        if self.external_config_dict.get("source_datasets"):
            self.internal_config_dict["load_col"] = {"inter": ["user_id", "item_id", "timestamp"]}
        checkpoint = self.external_config_dict.get("transfer_from")
        if checkpoint and model in plugin_models():
            self.internal_config_dict.update(inherited_settings(checkpoint))
