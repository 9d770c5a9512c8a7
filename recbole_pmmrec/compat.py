"""Version-guarded patches that let RecBole 1.2.1 run on current numpy, pandas and torch.

Every patch is applied once, by :func:`apply`, which ``import recbole_pmmrec`` calls. Each
patch is guarded by the version that needs it and is a no-op elsewhere.

- numpy >= 2 removed ``np.float_``/``np.float``/``np.bool``...: RecBole's
  ``Config.compatibility_settings`` and its metrics use them.
- pandas >= 3: ``Series.agg(len)`` aggregates, breaking ``Dataset._remap`` for
  ``token_seq`` fields, and copy-on-write turns ``fillna(inplace=True)`` on a column into a
  silent no-op. setup.py pins ``pandas<3`` (see README); :func:`check_pandas` refuses to run
  on pandas 3 rather than produce silently wrong data.
- torch >= 2.6 defaults ``torch.load(weights_only=True)``; RecBole's checkpoints pickle the
  whole ``Config``, so the best-model reload and resume fail. RecBole's trainer module is
  pointed at :func:`load_checkpoint` instead.
- ``recbole.quick_start`` imports ``ray`` at module top: this package never imports it
  (see :mod:`recbole_pmmrec.quick_start`).
"""

import types

import numpy as np
import pandas as pd
import torch

_NUMPY_ALIASES = {
    "bool": np.bool_,
    "int": np.int_,
    "float": np.float64,
    "float_": np.float64,
    "complex": np.complex128,
    "complex_": np.complex128,
    "object": np.object_,
    "str": np.str_,
    "long": np.int_,
    "unicode": np.str_,
    "unicode_": np.str_,
}

_applied = False


def _major(version):
    return int(version.split(".")[0])


def numpy_needs_aliases():
    return _major(np.__version__) >= 2


def patch_numpy():
    """Restore the numpy 1 scalar aliases RecBole uses (only those numpy lacks)."""
    if not numpy_needs_aliases():
        return
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


def check_pandas():
    if _major(pd.__version__) >= 3:
        raise RuntimeError(
            f"pandas {pd.__version__} is installed, but RecBole 1.2.1 corrupts data under "
            "pandas 3 (token_seq remapping fails and fillna(inplace=True) silently does "
            "nothing). Install 'pandas>=2.2,<3' (setup.py pins it)."
        )


def load_checkpoint(path, map_location=None, mmap=None):
    """Load a RecBole checkpoint (a pickled dict holding the Config).

    RecBole checkpoints are pickles of arbitrary objects, so they are loaded with
    ``weights_only=False``: load only checkpoints you or your team wrote.
    """
    return torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)


def _torch_with_trusted_load():
    """A stand-in for the ``torch`` module whose ``load`` is :func:`load_checkpoint`."""
    proxy = types.ModuleType("torch")
    proxy.__dict__.update(torch.__dict__)
    proxy.load = load_checkpoint
    return proxy


def torch_needs_trusted_load():
    major, minor = (int(p) for p in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 6)


def patch_torch_load():
    if not torch_needs_trusted_load():
        return
    import recbole.trainer.trainer as trainer_module

    trainer_module.torch = _torch_with_trusted_load()


def patch_config():
    """RecBole's Config sets numpy aliases from ``np.float_``, which numpy 2 lacks."""
    from recbole.config import Config

    Config.compatibility_settings = lambda self: patch_numpy()


def apply():
    global _applied
    if _applied:
        return
    check_pandas()
    patch_numpy()
    patch_config()
    patch_torch_load()
    _applied = True
