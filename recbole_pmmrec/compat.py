"""Version-guarded fixes that let RecBole 1.2.1 run on current numpy and pandas.

:func:`apply` runs them; the plugin's :class:`~recbole_pmmrec.config.Config` calls it in
place of RecBole's own ``compatibility_settings`` (which fails on numpy 2), so every run
applies them once, before anything else of RecBole's runs.

- numpy >= 2 removed ``np.float_``/``np.float``/``np.bool``...: RecBole's metrics use them;
  :func:`restore_numpy_aliases` adds back those numpy lacks (the plugin's one patch of
  another library's namespace).
- pandas >= 3: ``Series.agg(len)`` aggregates, breaking ``Dataset._remap`` for
  ``token_seq`` fields, and copy-on-write turns ``fillna(inplace=True)`` on a column into a
  silent no-op. setup.py pins ``pandas<3`` (see README); :func:`check_pandas` refuses to run
  on pandas 3 rather than produce silently wrong data.

- RecBole's ``model/sequential_recommender/sine.py`` calls
  ``torch.autograd.set_detect_anomaly(True)`` when it is imported, which happens on any
  lookup of a RecBole model: every later backward pass in the process runs in anomaly mode,
  about 4x slower (measured on PMMRec's training step). :func:`end_anomaly_mode` turns it
  off; the plugin's model lookup calls it after importing RecBole's models.

torch >= 2.6's ``weights_only`` loading is handled by the trainers
(:class:`~recbole_pmmrec.trainer.PluginTrainerMixin`), and ``recbole.quick_start``, which
imports ``ray``, is never imported (see :mod:`recbole_pmmrec.quick_start`).
"""

from logging import getLogger

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


def _major(version):
    return int(version.split(".")[0])


def numpy_needs_aliases():
    return _major(np.__version__) >= 2


def restore_numpy_aliases():
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


def end_anomaly_mode():
    """Turn off autograd anomaly detection if RecBole's import of its models turned it on."""
    if torch.is_anomaly_enabled():
        torch.autograd.set_detect_anomaly(False)
        getLogger().info("autograd anomaly detection (enabled by RecBole's sine.py on import) turned off")


def apply():
    check_pandas()
    restore_numpy_aliases()
