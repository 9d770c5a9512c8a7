"""Reading checkpoints: the best model of a run, a resumed run, a transfer source.

RecBole's checkpoints pickle the whole ``Config``; torch >= 2.6 refuses them by default
(``weights_only=True``), so they are loaded here with ``weights_only=False``: load only
checkpoints you or your team wrote.
"""

from pathlib import Path
from typing import NamedTuple

import torch


class CheckpointError(ValueError):
    """A checkpoint file is missing or is not what the caller needs."""


class PMMRecCheckpoint(NamedTuple):
    """A PMMRec checkpoint: its weights (memory-mapped) and its transfer manifest."""

    path: Path
    state_dict: dict
    manifest: dict


def load_checkpoint(path, map_location=None, mmap=None):
    """The checkpoint dict at ``path`` (a trusted file: see the module docstring)."""
    return torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)


def read_pmmrec_checkpoint(path):
    """The PMMRec checkpoint at ``path``, weights memory-mapped, with its manifest."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"transfer_from: checkpoint not found: {path}")
    checkpoint = load_checkpoint(path, map_location="cpu", mmap=True)
    manifest = (checkpoint.get("other_parameter") or {}).get("transfer_manifest")
    if manifest is None:
        model = getattr(checkpoint.get("config"), "final_config_dict", {}).get("model", "unknown")
        raise CheckpointError(f"transfer_from: {path} is not a PMMRec checkpoint (model {model}, no transfer_manifest)")
    return PMMRecCheckpoint(path, checkpoint["state_dict"], manifest)
