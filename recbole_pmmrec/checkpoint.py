"""Checkpoints that are safe to load: tensors and plain data only, written atomically.

Every checkpoint the plugin writes (the best model of a run, the resume state of a run, for
every model) holds the model's ``state_dict``, ``other_parameter`` (PMMRec's transfer
manifest), the optimiser state, plain training counters, RNG states, and the run's settings
as plain data (``settings``: what rebuilds the Config; ``config``: the final values). It
loads with ``torch.load(weights_only=True)``, which never runs code from the file.

RecBole's own checkpoints pickle the whole ``Config`` object: loading one unpickles
arbitrary objects, and a crafted file runs any code it likes. They are refused unless the
caller passes ``trust=True`` (config key ``trust_checkpoint``) for a file they trust.
"""

import pickle
import random
from enum import Enum
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from dataset_converters.atomic import replace_when_done

FORMAT = "recbole-pmmrec/1"
# settings RecBole's Config derives itself; never passed back when a Config is rebuilt
_DERIVED = ("transfer_from", "local_rank")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unsafe to load, or not what the caller needs."""


class PMMRecCheckpoint(NamedTuple):
    """A PMMRec checkpoint: its weights (memory-mapped) and its transfer manifest."""

    path: Path
    state_dict: dict
    manifest: dict


def plain(value):
    """``value`` as plain data (str, numbers, bools, None, lists, dicts): devices and enums
    become their names, anything else its ``str``."""
    if value is None or isinstance(value, str):
        return value
    for kind in (bool, int, float):  # numpy scalars too, as Python numbers
        if isinstance(value, kind) or isinstance(value, np.generic) and np.issubdtype(type(value), kind):
            return kind(value)
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    return str(value)


def run_settings(config):
    """The plain settings that rebuild ``config`` (with :class:`recbole_pmmrec.config.Config`):
    model, dataset, the settings given explicitly (files, dict, argv) and those inherited
    from a transfer checkpoint (its weights are in the new checkpoint already)."""
    source = getattr(config, "transfer_checkpoint", None)
    inherited = source.manifest["architecture"] if source is not None else {}
    given = {**inherited, **config.external_config_dict}
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "config_dict": plain({k: v for k, v in given.items() if k not in _DERIVED + ("model", "dataset")}),
    }


def rng_states():
    """The states of every random generator a training step draws from."""
    numpy_state = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *plain(numpy_state[2:])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states):
    random.setstate(tuple(tuple(s) if isinstance(s, list) else s for s in states["python"]))
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(state, path):
    """Write ``state`` (tensors and plain data) to ``path`` atomically: through a temporary
    file in the same folder renamed into place, so a kill never leaves a half-written file
    under ``path`` (the previous file stays intact)."""
    with replace_when_done(path, binary=True) as f:
        torch.save({"format": FORMAT, **state}, f)


def load_checkpoint(path, map_location=None, mmap=None, trust=False):
    """The checkpoint dict at ``path``, loaded with ``weights_only=True``.

    A file that needs full unpickling (RecBole's own checkpoints) raises
    :class:`CheckpointError` unless ``trust`` is set: unpickling runs code from the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        if not trust:
            raise CheckpointError(
                f"{path} holds Python objects, not only tensors and plain data (RecBole's own "
                f"checkpoints pickle the Config): loading it would run code from the file. Load "
                f"it only if you trust it, with trust_checkpoint=True (--trust_checkpoint=True). "
                f"({str(error).splitlines()[0]})"
            ) from None
    return torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)


def read_pmmrec_checkpoint(path, trust=False):
    """The PMMRec checkpoint at ``path``, weights memory-mapped, with its manifest."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"transfer_from: checkpoint not found: {path}")
    checkpoint = load_checkpoint(path, map_location="cpu", mmap=True, trust=trust)
    manifest = (checkpoint.get("other_parameter") or {}).get("transfer_manifest")
    if manifest is None:
        raise CheckpointError(
            f"transfer_from: {path} is not a PMMRec checkpoint (model {saved_model_name(checkpoint)}, "
            f"no transfer_manifest)"
        )
    return PMMRecCheckpoint(path, checkpoint["state_dict"], manifest)


def saved_model_name(checkpoint):
    """The model a checkpoint dict was trained as (plugin or RecBole format)."""
    config = checkpoint.get("config")
    if isinstance(config, dict):
        return config.get("model", "unknown")
    return getattr(config, "final_config_dict", {}).get("model", "unknown")
