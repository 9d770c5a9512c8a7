"""PMMRec, a pure multi-modality transferable sequential recommender, as a RecBole plugin.

Layout: integration with RecBole at the top (``config``, ``validation``, ``compat``,
``registry``, ``quick_start``, ``distributed``, ``trainer``, ``checkpoint``, ``transfer``,
``evaluation``, ``recommend``, ``pretrained``); the model's parts in
:mod:`recbole_pmmrec.model`; the data layer in :mod:`recbole_pmmrec.data`; experiment
commands in :mod:`recbole_pmmrec.experiments` (never imported by the library).
"""

from recbole_pmmrec.config import Config
from recbole_pmmrec.quick_start import load_data_and_model, run_recbole

__all__ = ["Config", "run_recbole", "load_data_and_model"]
__version__ = "0.1.0"
