"""RecBole ``Config`` that also reads this plugin's ``properties/`` YAML files."""

import os
from functools import lru_cache
from pathlib import Path

import torch
import yaml
from recbole.config import Config as RecBoleConfig

from recbole_pmmrec import compat
from recbole_pmmrec.checkpoint import read_pmmrec_checkpoint
from recbole_pmmrec.distributed import init_process_group, launch_settings
from recbole_pmmrec.registry import get_model, plugin_models
from recbole_pmmrec.validation import check_settings, name_list


def properties_dir():
    """The ``properties/`` folder: inside the package when installed, beside it in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "properties", here.parent / "properties"):
        if (candidate / "model").is_dir():
            return candidate
    raise FileNotFoundError(f"recbole_pmmrec's properties/ folder was not found near {here}")


@lru_cache(maxsize=None)
def _yaml_keys(path):
    return tuple(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})


@lru_cache(maxsize=None)
def _known_keys():
    """Every key RecBole's and this plugin's defaults define (any model, any dataset)."""
    import recbole
    from recbole.config.configurator import dataset_arguments, evaluation_arguments, general_arguments
    from recbole.config.configurator import training_arguments

    files = [*Path(recbole.__file__).parent.joinpath("properties").rglob("*.yaml"), *properties_dir().rglob("*.yaml")]
    keys = {key for file in files for key in _yaml_keys(file)}
    return frozenset(keys | set(general_arguments + training_arguments + evaluation_arguments + dataset_arguments)
                     | {"model", "dataset", "config_files", "local_rank"})


def _scalar(text):
    """A list element from the command line: a number or boolean as such, else the text."""
    value = yaml.safe_load(text)
    return value if isinstance(value, (int, float, bool)) else text


class Config(RecBoleConfig):
    """RecBole's configurator with plugin-first model lookup and plugin YAML defaults.

    Precedence, lowest first: RecBole's overall/model/dataset YAML and its quick-start
    settings, then this plugin's ``properties/overall.yaml``, ``properties/model/<model>.yaml``
    and ``properties/dataset/<dataset>.yaml``, the dataset folder's own ``<dataset>.yaml``
    (written by ``pmmrec-convert``), then (with ``transfer_from``) the checkpoint's
    architecture settings, then config files, the config dict and ``argv``. A list-valued
    key given as a string (``[a,b]``, ``"['a','b']"``, ``a,b``) becomes a list.

    ``argv`` holds ``--key=value`` arguments (a command's own argument list); unlike
    RecBole's Config, ``sys.argv`` is never read. A dataset given as ``a,b`` names the merged
    dataset ``a+b`` with ``source_datasets: [a, b]``. With ``transfer_from``, the checkpoint
    is read once and kept as ``transfer_checkpoint`` for the model to load its components.
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, argv=()):
        self._argv = list(argv)
        self.transfer_checkpoint = None
        super().__init__(model, dataset, config_file_list, config_dict)
        self._check_settings()

    def _check_settings(self):
        """The plugin's settings, checked before any data is loaded (:mod:`.validation`)."""
        plugin_model = self.model in plugin_models()
        props = properties_dir()
        files = [props / "overall.yaml"] + ([props / "model" / f"{self.model}.yaml"] if plugin_model else [])
        checked = [key for file in files for key in _yaml_keys(file)]
        check_settings(self, checked, _known_keys() | set(self.internal_config_dict), plugin_model)

    def compatibility_settings(self):
        compat.apply()

    def _load_cmd_line(self):
        values = {}
        for arg in self._argv:
            key, sep, value = arg[2:].partition("=")
            if not arg.startswith("--") or not sep or not key:
                raise ValueError(f"command-line argument {arg!r} is not --key=value")
            if values.get(key, value) != value:
                raise ValueError(f"--{key} is given twice with different values")
            values[key] = value
        return self._convert_config_dict(values)

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
            self._dataset_folder(dataset) / f"{dataset}.yaml",  # written by pmmrec-convert
        ):
            if os.path.isfile(file):
                self._update_internal_config_dict(str(file))
        if self.external_config_dict.get("source_datasets"):
            self.internal_config_dict["load_col"] = {"inter": ["user_id", "item_id", "timestamp"]}
        checkpoint = self.external_config_dict.get("transfer_from")
        if checkpoint and model in plugin_models():
            trust = bool(self.external_config_dict.get("trust_checkpoint"))
            self.transfer_checkpoint = read_pmmrec_checkpoint(checkpoint, trust=trust)
            self.internal_config_dict.update(self.transfer_checkpoint.manifest["architecture"])

    def _dataset_folder(self, dataset):
        data_path = self.external_config_dict.get("data_path") or self.internal_config_dict.get("data_path")
        return Path(data_path or "dataset/") / dataset

    def _get_final_config_dict(self):
        """RecBole's merge; then list-valued keys given as strings on the command line
        (``[text]``, ``"['a','b']"``, ``a,b``) become lists."""
        final = super()._get_final_config_dict()
        for key, value in self.external_config_dict.items():
            default = self.internal_config_dict.get(key)
            if isinstance(value, str) and isinstance(default, list):
                final[key] = [_scalar(v) for v in name_list(value)]
        return final

    def _init_device(self):
        """RecBole's device choice, or, in a distributed run (RecBole's keys or torchrun's
        environment), joining the process group with ``nccl`` on GPUs or ``gloo`` on the
        CPU (RecBole's own only knows ``nccl``)."""
        launch = launch_settings(self.final_config_dict)
        if launch is None:
            return super()._init_device()
        global_rank, size, local_rank, init_method = launch
        use_cuda = bool(self.final_config_dict["use_gpu"]) and torch.cuda.is_available()
        init_process_group(global_rank, size, init_method, use_cuda)
        if use_cuda:
            torch.cuda.set_device(local_rank)
        self.final_config_dict.update(
            device=torch.device("cuda", local_rank) if use_cuda else torch.device("cpu"),
            single_spec=False,
            local_rank=local_rank,
            world_size=size,
        )
        if global_rank != 0:  # one process logs and saves
            self.final_config_dict.update(state="error", show_progress=False, verbose=False)

    def __getstate__(self):
        """Pickled without the transfer checkpoint's weights (RecBole saves the Config in
        every checkpoint)."""
        return {**self.__dict__, "transfer_checkpoint": None}
